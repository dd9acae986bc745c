"""Models keras-ebnn cannot lower give one clear error naming the layer (issue: lowering)."""
import numpy as np
import pytest

from keras_ebnn import UnsupportedModelError, import_larq, lower
from keras_ebnn.errors import ModelOutputError

tf, lq = import_larq()
L = tf.keras.layers
SIGN = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
HID = dict(input_quantizer="ste_sign", **SIGN)


def conv(filters=4, **kw):
    return lq.layers.QuantConv2D(filters, 3, use_bias=False, **{**HID, **kw})


def head(classes=3):
    return [L.Flatten(), lq.layers.QuantDense(classes, **HID)]


def seq(*layers):
    return tf.keras.Sequential([L.InputLayer((12, 10, 1))] + list(layers))


def first():
    return lq.layers.QuantConv2D(4, 3, use_bias=False, name="first", **SIGN)


def residual():
    inp = tf.keras.Input((12, 10, 1))
    a = first()(inp)
    b = lq.layers.QuantConv2D(4, 3, padding="same", **HID)(a)
    c = L.Add(name="add")([a, b])
    out = lq.layers.QuantDense(3, **HID)(L.Flatten()(c))
    return tf.keras.Model(inp, out)


def branching():
    inp = tf.keras.Input((12, 10, 1))
    a = first()(inp)
    b = lq.layers.QuantConv2D(4, 3, padding="same", name="branch", **HID)(a)
    out = lq.layers.QuantDense(3, **HID)(L.Flatten()(a))
    return tf.keras.Model(inp, [out, b])


NOT_A_CHAIN = "not a chain of fused blocks"  # lowered by the one lowering, but to other ops than blocks
BAD = {
    "float Conv2D": (lambda: seq(L.Conv2D(4, 3, name="fconv"), *head()), "fconv", NOT_A_CHAIN),
    "float Dense": (lambda: seq(first(), L.Flatten(), L.Dense(3, name="fdense")), "fdense", NOT_A_CHAIN),
    "AveragePooling2D": (lambda: seq(first(), L.AveragePooling2D(name="avg"), *head()), "avg", NOT_A_CHAIN),
    "residual": (residual, "add", NOT_A_CHAIN),
    "branching outputs": (branching, "", "outputs"),
    "depthwise": (lambda: seq(first(), lq.layers.QuantDepthwiseConv2D(3, name="dw", depthwise_quantizer="ste_sign"),
                              *head()), "dw", NOT_A_CHAIN),
    "float hidden input": (lambda: seq(first(), L.Flatten(), lq.layers.QuantDense(3, name="hd", **SIGN)),
                           "hd", NOT_A_CHAIN),
    "float weights": (lambda: seq(lq.layers.QuantConv2D(4, 3, name="fw"), *head()), "fw", NOT_A_CHAIN),
    "DoReFa input": (lambda: seq(first(), L.Flatten(),
                                 lq.layers.QuantDense(3, input_quantizer="dorefa_quantizer", name="dq", **SIGN)),
                     "dq", "multi-bit"),
    "magnitude-aware weights": (lambda: seq(lq.layers.QuantConv2D(4, 3, kernel_quantizer="magnitude_aware_sign",
                                                                  name="ma"), *head()), "ma", NOT_A_CHAIN),
    "dilation": (lambda: seq(lq.layers.QuantConv2D(4, 3, dilation_rate=2, name="dil", **SIGN), *head()),
                 "dil", "dilation"),
    "ends with conv": (lambda: seq(first(), conv(name="last")), "last", "not a vector of scores"),
    "BN after Flatten": (lambda: seq(first(), L.Flatten(), L.BatchNormalization(name="bnf"),
                                     lq.layers.QuantDense(3, **HID)), "bnf", NOT_A_CHAIN),
    "two pools": (lambda: seq(first(), L.MaxPooling2D(name="p1"), L.MaxPooling2D(name="p2"), *head()),
                  "p2", NOT_A_CHAIN),
    "global average pool": (lambda: seq(first(), L.GlobalAveragePooling2D(name="gap"),
                                        lq.layers.QuantDense(3, **HID)), "gap", NOT_A_CHAIN),
    "pad_values 0.5": (lambda: seq(lq.layers.QuantConv2D(4, 3, padding="same", pad_values=0.5, name="pv", **SIGN),
                                   *head()), "pv", "pad_values"),
}
# chains the old chain-only lowering refused, which the one lowering fuses into blocks: lower() takes them
FUSED = {
    "ReLU between binary layers": lambda: seq(first(), L.ReLU(name="relu"), *head()),
    "relu activation on conv": lambda: seq(lq.layers.QuantConv2D(4, 3, activation="relu", name="c", **SIGN), *head()),
    "Rescaling after the first layer": lambda: seq(first(), L.Rescaling(0.5, name="rs"), *head()),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unsupported_model_gives_clear_error(case):
    build, layer_name, phrase = BAD[case]
    model = build()
    with pytest.raises(UnsupportedModelError) as info:
        lower(model)
    msg = str(info.value)
    assert layer_name in msg, msg
    assert phrase.lower() in msg.lower(), msg
    if not isinstance(info.value, ModelOutputError):  # (an output problem: no layer list applies)
        assert msg.count("Supported layers: (graph lowering") == 1, msg  # the one lowering's list, once
        assert "must be a single chain" not in msg  # no chain-only hint list after it
    # the chain view's text (what a chain of fused blocks is) only when the graph is not a chain
    assert ("lower() / LoweredModel describe a chain of fused blocks" in msg) == (phrase == NOT_A_CHAIN), msg
    if layer_name:
        assert f"'{layer_name.strip(chr(39))}'" in msg and "layer " in msg


@pytest.mark.parametrize("case", sorted(FUSED))
def test_chain_view_of_fused_models(case):
    """lower() is the chain view of the one lowering: a model whose graph fuses into blocks is a chain,
    with the graph's very blocks (thresholds found through the ReLU / Rescaling)."""
    from keras_ebnn.ir.graph import lower_graph
    model = FUSED[case]()
    lowered = lower(model)
    blocks = [op.params["block"] for op in lower_graph(model).ops if op.kind == "block"]
    assert [b.kind for b in lowered.blocks] == [b.kind for b in blocks] == ["input_conv", "output_dense"]
    for a, b in zip(lowered.blocks, blocks):
        np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(lowered.blocks[0].threshold, blocks[0].threshold)
    assert lowered.blocks[0].source_layers[0] == model.layers[0].name


def test_unsupported_error_names_index_and_class():
    model = seq(first(), L.AveragePooling2D(name="avg"), *head())
    with pytest.raises(UnsupportedModelError) as info:
        lower(model)
    err = info.value
    assert (err.layer_index, err.layer_name, err.layer_class) == (1, "avg", "AveragePooling2D")
    assert str(err).startswith("layer 1 'avg' (AveragePooling2D): the model is not a chain of fused blocks")
    assert "conv_pool ('first', 'avg'" in str(err)  # the op it lowers to, with its layers


def test_missing_model_file(tmp_path):
    with pytest.raises(UnsupportedModelError, match="could not load"):
        lower(str(tmp_path / "missing.keras"))


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_output_affine(bad):
    """Logit scales/offsets must be finite (the C argmax compares float bits; a NaN logit has no order)."""
    model = seq(first(), L.Flatten(), lq.layers.QuantDense(3, name="out", **HID), L.BatchNormalization(name="bn"))
    bn = model.get_layer("bn")
    bn.beta.assign([0.0, bad, 0.0])
    with pytest.raises(UnsupportedModelError, match="non-finite") as info:
        lower(model)
    assert "'out'" in str(info.value)
