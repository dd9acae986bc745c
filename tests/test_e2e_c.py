"""Keras -> lowering -> generated C (host gcc with ASan/UBSan) vs the reference executor, on the same
generated models as test_lowering.py: identical classes and bit-identical logits (issue: C runtime)."""
import numpy as np
import pytest

from keras_ebnn import host, lower, reference
from modelgen import random_model
from test_lowering import N_MODELS

pytestmark = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")


@pytest.mark.parametrize("seed", range(N_MODELS))
def test_generated_c_matches_reference(seed, tmp_path):
    from keras_ebnn.exporters.c import export_c
    model, x, desc = random_model(seed, n_inputs=96)
    lowered = lower(model, name=f"m{seed}")
    export_c(lowered, tmp_path / "out", f"m{seed}")
    exe = host.build_runner(tmp_path / "out", f"m{seed}", sanitize=True, debug_hook=True)
    nbits = [int(np.prod(b.out_shape)) for b in lowered.blocks[:-1]]
    classes, logits, bits = host.run_runner(exe, x, lowered.num_classes, lowered.input.dtype, nbits)
    ref = reference.run(lowered, x)
    for i, (cb, rb) in enumerate(zip(bits, ref["bits"])):
        assert np.array_equal(cb, rb.reshape(len(x), -1)), f"block {i} bits differ: {desc}"
    assert np.array_equal(classes, ref["classes"]), desc
    assert np.array_equal(logits, ref["logits"]), (np.abs(logits - ref["logits"]).max(), desc)
