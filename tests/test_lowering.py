"""Keras <-> reference executor, on many generated Larq models (issue: lowering)."""
import numpy as np
import pytest

from keras_ebnn import lower
from keras_ebnn.ir import graph_reference
from keras_ebnn.ir.blocks import accumulator_range
from keras_ebnn.frontdoor.verify import keras_outputs, softmax
from helpers.modelgen import random_model
from helpers.tiers import sweep

N_MODELS = 60


def _affine_terms(lowered, ref_logits):
    """Size of the terms of logit = x * scale + offset, to bound float32 rounding error."""
    out = lowered.blocks[-1]
    x = (ref_logits - out.offset) / np.where(out.scale == 0, 1, out.scale)
    return np.abs(x * out.scale) + np.abs(out.offset)


@pytest.mark.parametrize("seed", sweep(range(N_MODELS), fast=10))
def test_reference_matches_keras(seed):
    model, x, desc = random_model(seed)
    lowered = lower(model)
    ref = graph_reference.run(lowered, x, keep_bits=True)
    kbits, klogits, kprobs = keras_outputs(model, lowered, x)
    assert len(kbits) == len(ref["bits"]) == len(lowered.blocks) - 1
    # Keras computes a float/uint8 first layer in float32 (the reference exactly): allow rare flips there
    float_input = lowered.input.mode in ("float", "uint8")
    total, wrong = 0, 0
    for i, (kb, rb) in enumerate(zip(kbits, ref["bits"])):
        assert kb.shape == rb.shape, (i, desc)
        total += kb.size
        wrong += int(np.sum(kb != rb))
        if not float_input:
            assert np.array_equal(kb, rb), f"block {i} bits differ ({np.mean(kb != rb):.2e}): {desc}"
    if float_input:
        print(f"float-input model {seed}: hidden bit mismatch rate {wrong / max(total, 1):.2e}")
        assert wrong / max(total, 1) < 1e-4, desc
    kclass = np.argmax(klogits if klogits is not None else kprobs, axis=1)
    assert np.array_equal(kclass, ref["classes"]), desc
    if klogits is not None:
        tol = 1e-5 * _affine_terms(lowered, ref["logits"]) + 1e-6
        np.testing.assert_array_less(np.abs(ref["logits"] - klogits), tol + 1e-5 * np.abs(klogits))
        np.testing.assert_allclose(ref["logits"], klogits, rtol=1e-5, atol=float(tol.max()))
    else:
        np.testing.assert_allclose(softmax(ref["logits"]), kprobs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_generated_models_cover_the_options():
    """The generator really produces the variety the tests claim (checked on its lowered blocks; about
    the full sweep, so in the full tier)."""
    seen = set()
    for seed in range(N_MODELS):
        model, _, _ = random_model(seed, n_inputs=2)
        lowered = lower(model)
        seen.add(lowered.input.mode)
        seen.add(f"c{lowered.input.shape[2]}")
        if lowered.input.shape[0] != lowered.input.shape[1]:
            seen.add("non-square")
        convs = [b for b in lowered.blocks if b.kind in ("input_conv", "binary_conv")]
        dense = [b for b in lowered.blocks if b.kind == "binary_dense"]
        seen.add(f"dense{len(dense)}")
        for b in convs:
            g = b.geometry
            seen.add(f"k{g.kernel[0]}")
            seen.add(f"s{g.strides[0]}")
            seen.add(f"pad{g.pad_value}" if g.pad != (0, 0) else "valid")
            if g.pool:
                seen.add("pool")
                if b.pool_min.any():
                    seen.add("pool_min")
            if b.kind == "binary_conv":
                seen.add("binary_conv")
        for b in lowered.blocks[:-1]:
            r = accumulator_range(b)
            if r is None and np.any(np.isinf(b.threshold)) or r is not None and np.any(np.abs(b.threshold) > r[1]):
                seen.add("constant-channel")
    need = {"float", "uint8", "sign_uint8", "c1", "c3", "non-square", "dense0", "dense1", "dense2",
            "dense3", "k1", "k3", "k5", "k7", "s1", "s2", "pad0", "pad1", "valid", "pool", "pool_min",
            "binary_conv", "constant-channel"}
    assert need <= seen, need - seen


def test_first_layer_ties():
    """A uint8 first layer with neither bias nor batch norm has its threshold exactly on the integer
    grid: Keras's float32 rounding then decides the sign of an exact 0. Every bit on which Keras and
    the reference differ must be such a tie (accumulator == threshold); all other bits are equal."""
    from keras_ebnn.ir.graph_reference import _conv_acc, _input_values
    from helpers.modelgen import import_larq
    tf, lq = import_larq()
    model = tf.keras.Sequential([
        tf.keras.layers.InputLayer((14, 11, 1)), tf.keras.layers.Rescaling(1 / 255.0),
        lq.layers.QuantConv2D(8, 3, use_bias=False, kernel_quantizer="ste_sign"),
        tf.keras.layers.Flatten(),
        lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign")])
    x = np.random.default_rng(3).integers(0, 256, (400, 14, 11, 1)).astype(np.uint8)
    lowered = lower(model)
    block = lowered.blocks[0]
    assert np.all(block.threshold == 0)
    kbits, _, _ = keras_outputs(model, lowered, x)
    values, _ = _input_values(block.input, x)
    acc = _conv_acc(values, block, True, 0)
    ref_bits = graph_reference.run(lowered, x, keep_bits=True)["bits"][0]
    differ = kbits[0] != ref_bits
    assert np.all(acc[differ] == 0)
    print(f"tie mismatches: {differ.mean():.2e} of bits, {np.mean(acc == 0):.2e} of bits are ties")
