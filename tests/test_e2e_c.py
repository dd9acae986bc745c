"""Keras -> lowering -> generated C (host gcc with ASan/UBSan) vs the reference executor, on the same
generated models as test_lowering.py: identical classes and bit-identical logits (issue: C runtime)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ebnn.frontdoor import host
from keras_ebnn import lower
from keras_ebnn.ir import graph_reference
from helpers.modelgen import random_model
from test_lowering import N_MODELS
from helpers.tiers import sweep

pytestmark = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")


@pytest.mark.parametrize("seed", sweep(range(N_MODELS), fast=8))
def test_generated_c_matches_reference(seed, tmp_path):
    from keras_ebnn.exporters.c import export_c
    model, x, desc = random_model(seed, n_inputs=96)
    lowered = lower(model, name=f"m{seed}")
    export_c(lowered, tmp_path / "out", f"m{seed}")
    exe = host.build_runner(tmp_path / "out", f"m{seed}", sanitize=True, debug_hook=True)
    nbits = [int(np.prod(b.out_shape)) for b in lowered.blocks[:-1]]
    classes, logits, bits = host.run_runner(exe, x, lowered.num_classes, lowered.input.dtype, nbits)
    ref = graph_reference.run(lowered, x, keep_bits=True)
    for i, (cb, rb) in enumerate(zip(bits, ref["bits"])):
        assert np.array_equal(cb, rb.reshape(len(x), -1)), f"block {i} bits differ: {desc}"
    assert np.array_equal(classes, ref["classes"]), desc
    assert np.array_equal(logits, ref["logits"]), (np.abs(logits - ref["logits"]).max(), desc)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES.parent))
from bench.common import MODELS  # noqa: E402  (the shipped models: name -> (file, dataset))


def test_every_shipped_model_is_listed():
    assert sorted(EXAMPLES.parent / f for f, _ in MODELS.values()) == sorted((EXAMPLES / "models").glob("*.keras"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_model_c_matches_keras(name, tmp_path):
    """Every model shipped in examples/models: its C export (ASan/UBSan) gives the reference executor's
    logits bit for bit and Keras's classes, on 300 test images of its dataset (the MNIST sample when
    that dataset is not available: C = reference = Keras is a property of any input)."""
    from keras_ebnn.train import datasets
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.frontend.lowering import load_model
    path, dataset = MODELS[name]
    if dataset != "mnist" and datasets.find_dir(dataset) is not None:
        x = datasets.load(dataset, split="test")[0][:300]
    else:  # exactness needs inputs, not the model's own dataset: the shipped MNIST sample on any clone
        x = np.load(EXAMPLES / "data" / "mnist_test_sample.npz")["x"][:300]
    model = load_model(EXAMPLES.parent / path)
    lowered = lower(model, name="shipped")
    export_c(lowered, tmp_path / "out", "shipped")
    exe = host.build_runner(tmp_path / "out", "shipped", sanitize=True)
    classes, logits = host.run_runner(exe, x, lowered.num_classes, lowered.input.dtype)
    ref = graph_reference.run(lowered, x, keep_bits=True)
    assert np.array_equal(logits, ref["logits"]) and np.array_equal(classes, ref["classes"])
    keras_classes = model.predict(x.astype(np.float32), batch_size=300, verbose=0).argmax(axis=1)
    assert np.array_equal(classes, keras_classes)
