"""Generated C vs the NumPy reference on 60 random LoweredModels built directly from blocks
(tests/helpers/randblocks.py): every hidden block's bits, the classes and the logits must be identical.
Each model is compiled once (gcc, -Werror -pedantic, ASan + UBSan) and run on a batch of 64 inputs."""
import numpy as np
import pytest

from helpers.cbuild import run_model
from keras_ebnn.frontdoor import host
from keras_ebnn.ir import graph_reference
from keras_ebnn.exporters.c import export_c, memory_plan
from helpers.randblocks import random_lowered
from helpers.tiers import sweep

N_MODELS = 60
pytestmark = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")


@pytest.mark.parametrize("seed", sweep(range(N_MODELS), fast=10))
def test_random_blocks_match_reference(seed, tmp_path):
    model, x = random_lowered(seed)
    name = f"r{seed}"
    plan = export_c(model, tmp_path / "out", name)
    classes, logits, bits = run_model(model, tmp_path / "out", name, x)
    ref = graph_reference.run(model, x, keep_bits=True)
    for i, (cb, rb) in enumerate(zip(bits, ref["bits"])):
        assert np.array_equal(cb, rb.reshape(len(x), -1)), f"block {i} ({model.blocks[i].kind}) bits differ"
    assert np.array_equal(classes, ref["classes"])
    # bit-identical: the C code performs the same two float32 operations per logit
    assert np.array_equal(logits.view(np.uint32), ref["logits"].view(np.uint32))
    assert plan == memory_plan(model)


def _byte_kernels_take(model):
    """Whether an EBNN_BYTE_KERNELS build runs the model: its uint8-input conv needs every accumulator
    in int16 (acc16) and at most 255 taps, a sign_float input conv acc16 (see runtime_c/README.md; a
    binary conv beyond int16 falls back on the generic code)."""
    from keras_ebnn.ir.blocks import accumulator_range, fan_in
    for b in model.blocks:
        if b.kind == "input_conv" and model.input.mode != "float":
            if accumulator_range(b)[1] >= 2**15 - 1 or (model.input.dtype == np.uint8 and fan_in(b) > 255):
                return False
    return True


@pytest.mark.parametrize("seed", sweep(range(0, N_MODELS, 3), fast=7))
def test_random_blocks_byte_kernels(seed, tmp_path):
    """The same with the AVR default EBNN_BYTE_KERNELS=1 built on the host (ASan + UBSan); a model the
    byte kernels do not take must not build (the generated C's #error names the block and the option),
    rather than compute wrongly."""
    import shutil
    model, x = random_lowered(seed)
    name = f"r{seed}"
    export_c(model, tmp_path / "out", name)
    takes = _byte_kernels_take(model)
    if not takes:
        with pytest.raises(RuntimeError, match=rf"#error.*{name}: block 0 \(input_conv.*-DEBNN_BYTE_KERNELS=0"):
            host.build_runner(tmp_path / "out", name, opt="-O1", extra_flags=["-DEBNN_BYTE_KERNELS=1"])
        return
    exe = host.build_runner(tmp_path / "out", name, opt="-O1", sanitize=True, debug_hook=True,
                            extra_flags=["-DEBNN_BYTE_KERNELS=1"])
    try:
        nbits = [int(np.prod(b.out_shape)) for b in model.blocks[:-1]]
        classes, logits, bits = host.run_runner(exe, x, model.num_classes, model.input.dtype, nbits)
    finally:
        shutil.rmtree(exe.parent, ignore_errors=True)
    ref = graph_reference.run(model, x, keep_bits=True)
    for i, (cb, rb) in enumerate(zip(bits, ref["bits"])):
        assert np.array_equal(cb, rb.reshape(len(x), -1)), f"block {i} ({model.blocks[i].kind}) bits differ"
    assert np.array_equal(classes, ref["classes"])
    assert np.array_equal(logits.view(np.uint32), ref["logits"].view(np.uint32))


def test_byte_kernels_take_most_random_models():
    """The byte-kernel test above must mostly compare results, not refusals."""
    assert sum(_byte_kernels_take(random_lowered(seed)[0]) for seed in range(0, N_MODELS, 3)) >= 12


def test_memory_plan_invariants():
    """Block i's input and output buffers never overlap, nor overlap its kernel scratch; the
    activation part is exactly the largest adjacent (input + output) pair; buffers are exact."""
    for seed in range(N_MODELS):
        model, _ = random_lowered(seed)
        plan = memory_plan(model)
        blocks = plan["blocks"]
        hidden = [b for b in blocks if b["kind"] != "output_dense"]
        sizes = [b["ram_bytes"] for b in hidden]
        assert plan["activation_bytes"] == max([sizes[0]] + [a + b for a, b in zip(sizes, sizes[1:])])
        assert plan["arena_bytes"] == plan["totals"]["arena_bytes"] >= plan["activation_bytes"]
        for b in hidden:
            assert b["ram_bytes"] == (b["out_bits"] + 31) // 32 * 4
        for b in blocks:
            live = []
            if b["index"] > 0:
                prev = hidden[b["index"] - 1]
                live.append((prev["buffer_offset"], prev["ram_bytes"]))
            if b["kind"] != "output_dense":
                live.append((b["buffer_offset"], b["ram_bytes"]))
            if b["scratch_bytes"]:
                live.append((b["scratch_offset"], b["scratch_bytes"]))
            for off, size in live:
                assert 0 <= off and off + size <= plan["arena_bytes"] and off % 4 == 0
            live.sort()
            for (a0, a1), (b0, _) in zip(live, live[1:]):
                assert a0 + a1 <= b0, (seed, b["index"], live)
