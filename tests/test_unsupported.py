"""Models keras-ebnn cannot lower give one clear error naming the layer (issue: lowering)."""
import pytest

from keras_ebnn import UnsupportedModelError, import_larq, lower

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


BAD = {
    "float Conv2D": (lambda: seq(L.Conv2D(4, 3, name="fconv"), *head()), "fconv", "QuantConv2D"),
    "float Dense": (lambda: seq(first(), L.Flatten(), L.Dense(3, name="fdense")), "fdense", "QuantDense"),
    "AveragePooling2D": (lambda: seq(first(), L.AveragePooling2D(name="avg"), *head()), "avg", "max pooling"),
    "ReLU between binary layers": (lambda: seq(first(), L.ReLU(name="relu"), *head()), "relu", "sign"),
    "relu activation on conv": (lambda: seq(lq.layers.QuantConv2D(4, 3, activation="relu", name="c", **SIGN),
                                            *head()), "'c'", "activation"),
    "residual": (residual, "add", "single chain"),
    "branching outputs": (branching, "", "outputs"),
    "depthwise": (lambda: seq(first(), lq.layers.QuantDepthwiseConv2D(3, name="dw", depthwise_quantizer="ste_sign"),
                              *head()), "dw", "depthwise"),
    "float hidden input": (lambda: seq(first(), L.Flatten(), lq.layers.QuantDense(3, name="hd", **SIGN)),
                           "hd", "input_quantizer"),
    "float weights": (lambda: seq(lq.layers.QuantConv2D(4, 3, name="fw"), *head()), "fw", "kernel_quantizer"),
    "DoReFa input": (lambda: seq(first(), L.Flatten(),
                                 lq.layers.QuantDense(3, input_quantizer="dorefa_quantizer", name="dq", **SIGN)),
                     "dq", "sign quantizer"),
    "magnitude-aware weights": (lambda: seq(lq.layers.QuantConv2D(4, 3, kernel_quantizer="magnitude_aware_sign",
                                                                  name="ma"), *head()), "ma", "sign"),
    "dilation": (lambda: seq(lq.layers.QuantConv2D(4, 3, dilation_rate=2, name="dil", **SIGN), *head()),
                 "dil", "dilation"),
    "ends with conv": (lambda: seq(first(), conv(name="last")), "last", "QuantDense"),
    "BN after Flatten": (lambda: seq(first(), L.Flatten(), L.BatchNormalization(name="bnf"),
                                     lq.layers.QuantDense(3, **HID)), "bnf", "Flatten"),
    "two pools": (lambda: seq(first(), L.MaxPooling2D(name="p1"), L.MaxPooling2D(name="p2"), *head()),
                  "p2", "second pooling"),
    "Rescaling not first": (lambda: seq(first(), L.Rescaling(0.5, name="rs"), *head()), "rs", "first layer"),
    "global average pool": (lambda: seq(first(), L.GlobalAveragePooling2D(name="gap"),
                                        lq.layers.QuantDense(3, **HID)), "gap", "max pooling"),
    "pad_values 0.5": (lambda: seq(lq.layers.QuantConv2D(4, 3, padding="same", pad_values=0.5, name="pv", **SIGN),
                                   *head()), "pv", "pad_values"),
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
    assert "Supported layers" in msg
    if layer_name:
        assert f"'{layer_name.strip(chr(39))}'" in msg and "layer " in msg


def test_unsupported_error_names_index_and_class():
    model = seq(first(), L.AveragePooling2D(name="avg"), *head())
    with pytest.raises(UnsupportedModelError) as info:
        lower(model)
    err = info.value
    assert (err.layer_index, err.layer_name, err.layer_class) == (1, "avg", "AveragePooling2D")
    assert str(err).startswith("layer 1 'avg' (AveragePooling2D):")


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
