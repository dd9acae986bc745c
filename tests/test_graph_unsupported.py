"""Models the graph lowering cannot lower give one clear UnsupportedModelError naming the layer."""
import pytest

from keras_ebnn import UnsupportedModelError, import_larq
from keras_ebnn.ir.graph import lower_graph

tf, lq = import_larq()
L = tf.keras.layers


def _two_outputs():
    inp = tf.keras.Input((8, 8, 1))
    x = L.Flatten()(L.Conv2D(4, 3)(inp))
    return tf.keras.Model(inp, [L.Dense(3, name="a")(x), L.Dense(2, name="b")(x)])


def _two_inputs():
    a, b = tf.keras.Input((4,)), tf.keras.Input((4,))
    return tf.keras.Model([a, b], L.Dense(2)(L.Add()([a, b])))


def _nested():
    inner = tf.keras.Sequential([L.InputLayer((8,)), L.Dense(4)], name="inner")
    inp = tf.keras.Input((8,))
    return tf.keras.Model(inp, L.Dense(2)(inner(inp)))


def _seq(*layers, shape=(8, 8, 1)):
    return tf.keras.Sequential([L.InputLayer(shape)] + list(layers))


CASES = {
    "lstm": (lambda: _seq(L.LSTM(4, name="lstm"), L.Dense(2), shape=(8, 3)), "LSTM", "not supported"),
    "dilation": (lambda: _seq(L.Conv2D(4, 3, dilation_rate=2, name="dil"), L.Flatten(), L.Dense(2)),
                 "Conv2D", "dilation_rate"),
    "causal": (lambda: _seq(L.Conv1D(4, 3, padding="causal", name="causal"), L.Flatten(), L.Dense(2),
                            shape=(8, 2)), "Conv1D", "padding"),
    "concat_axis": (lambda: _concat_axis1(), "Concatenate", "axis"),
    "softmax_middle": (lambda: _seq(L.Flatten(), L.Dense(4), L.Activation("softmax", name="sm"), L.Dense(2)),
                       "Activation", "last layer"),
    "multi_bit_input": (lambda: _seq(L.Flatten(), lq.layers.QuantDense(
        4, input_quantizer=lq.quantizers.DoReFa(k_bit=4), kernel_quantizer="ste_sign", name="q"), L.Dense(2)),
        "QuantDense", "multi-bit"),
    "ternary": (lambda: _seq(L.Flatten(), lq.layers.QuantDense(4, kernel_quantizer="ste_tern", name="t"),
                             L.Dense(2)), "QuantDense", "multi-bit"),
    "swish_activation": (lambda: _seq(L.Flatten(), L.Dense(4, activation="swish", name="sw"), L.Dense(2)),
                         "Dense", "activation"),
    "zero_padding": (lambda: _seq(L.ZeroPadding2D(1, name="zp"), L.Flatten(), L.Dense(2)),
                     "ZeroPadding2D", "not supported"),
    "bn_axis": (lambda: _seq(L.BatchNormalization(axis=1, name="bn"), L.Flatten(), L.Dense(2)),
                "BatchNormalization", "axis"),
    "conv_transpose": (lambda: _seq(L.Conv2DTranspose(4, 3, name="up"), L.Flatten(), L.Dense(2)),
                       "Conv2DTranspose", "not supported"),  # (SeparableConv2D is supported: issue 22)
}


def _concat_axis1():
    inp = tf.keras.Input((8, 8, 1))
    x = L.Concatenate(axis=1, name="cat")([inp, inp])
    return tf.keras.Model(inp, L.Dense(2)(L.Flatten()(x)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_layer_named(case):
    build, layer_class, words = CASES[case]
    with pytest.raises(UnsupportedModelError) as err:
        lower_graph(build())
    e = err.value
    assert e.layer_class == layer_class, str(e)
    assert e.layer_name and e.layer_name in str(e)
    assert words in str(e), str(e)


@pytest.mark.parametrize("build", [_two_outputs, _two_inputs])
def test_refused_several_inputs_or_outputs(build):
    with pytest.raises(UnsupportedModelError, match="exactly one (output )?is supported"):
        lower_graph(build())


def test_refused_nested_model():
    with pytest.raises(UnsupportedModelError, match="nested models") as err:
        lower_graph(_nested())
    assert err.value.layer_name == "inner"
