"""Exception types for models keras-ebnn cannot export or will not load.

`UnsupportedModelError` is the base: every error about the input model is one. Its `str()` keeps the
historical form (message, then `SUPPORTED`: what the one lowering, keras_ebnn.ir.graph.lower_graph, takes;
`lower()`'s chain view is that lowering's graph when it is a chain of fused blocks); `message` is the
one-line description and `hint` the supported-layers list (None when the list does not fit the problem, e.g. a file that could
not be read, or a model beyond the C kernels' parameter types). `ModelFileError` (unreadable / malformed file) and `UnsafeModelError` (a file that could
run code when loaded) are subclasses whose `str()` is the message alone.

Names that come from a model file (layers, classes) or from the user (paths) go through `printable`
before they reach a message: control characters (`\r`, ESC sequences, bidi overrides...) are
escaped, so a file cannot rewrite the terminal line that reports on it.
"""
import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def printable(text):
    """`text` with control and invisible formatting characters escaped (\\x1b, \\r, \\u202e...)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


SUPPORTED = (  # what the one lowering (keras_ebnn.ir.graph.lower_graph) takes; keras_ebnn.ir.graph.GRAPH_SUPPORTED
    "Supported layers: (graph lowering: any model with one input and one output) InputLayer, Rescaling, "
    "QuantConv1D/QuantConv2D/QuantDense/QuantDepthwiseConv2D/QuantSeparableConv1D/QuantSeparableConv2D "
    "(kernel, depthwise and pointwise quantizers sign-type, magnitude_aware_sign or None; input quantizer "
    "sign-type or None), Conv1D/Conv2D/DepthwiseConv1D/DepthwiseConv2D/SeparableConv1D/SeparableConv2D/"
    "Dense, BatchNormalization (last axis), ReLU, "
    "LeakyReLU, Activation (relu, relu6, hard_tanh, tanh, sigmoid, linear, a larq sign quantizer; "
    "softmax last), Max/Average"
    "Pooling1D/2D, GlobalAverage/GlobalMaxPooling1D/2D, Flatten, Reshape, Add, Concatenate (last "
    "axis), Python operators / tf.* calls (TFOpLambda: x + y, x - y, x * c, x / c, -x, tf.reshape, tf.nn.relu, "
    "...), Dropout-style no-ops; one input, one output.")


class UnsupportedModelError(ValueError):
    """Raised when a Keras model cannot be lowered to eBNN blocks.

    The message names the layer (index, name, class), says what is wrong and what is supported.
    Attributes: `layer_index`, `layer_name`, `layer_class` (None when the problem is not one layer),
    `reason`, `message` (one line with the optional `hint` sentence, without the supported-layers
    list) and `hint` (that list: `supported`, SUPPORTED by default).
    """

    def __init__(self, reason, layer=None, index=None, hint=None, supported=SUPPORTED):
        self.layer_index = index
        self.layer_name = getattr(layer, "name", None)
        self.layer_class = type(layer).__name__ if layer is not None else None
        where = ""
        if layer is not None:
            where = f"layer {index} '{printable(self.layer_name)}' ({printable(self.layer_class)}): "
        message = f"{where}{reason}"
        if hint and hint != supported:
            message += f" {hint}"
        self.message = message
        self.hint = supported
        super().__init__(f"{message}\n{supported}" if supported else message)
        self.reason = reason


class ModelFileError(UnsupportedModelError):
    """The model file is missing, unreadable or malformed (message names the file; no `hint`)."""

    def __init__(self, reason):
        ValueError.__init__(self, reason)
        self.layer_index = self.layer_name = self.layer_class = None
        self.reason = self.message = reason
        self.hint = None


class UnsafeModelError(ModelFileError):
    """Loading the model file could run code from it (Lambda, custom class, SavedModel graph...).

    `layer_label` is "layer 'NAME' (CLASS)" for the offending layer, or None. Pass
    trust_model=True / --trust-model only for files you trust like a Python script.
    """

    def __init__(self, reason, layer_label=None):
        super().__init__(reason)
        self.layer_label = layer_label


class ModelOutputError(UnsupportedModelError):
    """The model's outputs are not what NAME_predict returns (README "Limits"): several outputs, an
    output that is not a vector of scores, or a single unit that is neither a sigmoid nor a logit.
    The message names the outputs; `str()` is the message alone (no supported-layers list)."""

    def __init__(self, reason):
        ValueError.__init__(self, reason)
        self.layer_index = self.layer_name = self.layer_class = None
        self.reason = self.message = reason
        self.hint = None


class BudgetError(RuntimeError):
    """The model does not fit the RAM or flash budget; the message says by how much and why.
    (Raised by `keras_ebnn.export` and the exporters; also importable as keras_ebnn.frontdoor.exporting.BudgetError.)"""
