"""Exception types for models keras-ebnn cannot export or will not load.

`UnsupportedModelError` is the base: every error about the input model is one. Its `str()` keeps the
historical form (message, then the supported-layers list that applies: the chain's `SUPPORTED`, or the
graph lowering's for a graph refusal, never both); `message` is the one-line description and
`hint` the supported-layers list (None when the list does not fit the problem, e.g. a file that could
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


SUPPORTED = (
    "Supported layers: InputLayer; a leading Rescaling(scale, offset) (raw uint8 input); "
    "larq QuantConv2D (sign-type kernel_quantizer; input_quantizer None on the first layer, sign-type "
    "after it; padding valid/same, pad_values 0 or 1, any strides, no dilation/groups, no activation); "
    "MaxPooling2D (before or after BatchNormalization, at most one per block); BatchNormalization; "
    "Flatten; larq QuantDense (hidden and final); Dropout/GaussianNoise-style no-op layers; a final "
    "softmax. The model must be a single chain (Sequential or single-path functional) ending in a "
    "QuantDense."
)


class UnsupportedModelError(ValueError):
    """Raised when a Keras model cannot be lowered to eBNN blocks.

    The message names the layer (index, name, class), says what is wrong and what is supported.
    Attributes: `layer_index`, `layer_name`, `layer_class` (None when the problem is not one layer),
    `reason`, `message` (one line with the optional `hint` sentence, without the supported-layers
    list) and `hint` (that list: `supported`, the chain's SUPPORTED by default).
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

    def retarget(self, supported):
        """Make `supported` (e.g. the graph lowering's list) the supported-layers list this error
        prints, instead of the chain's: one list, the one that applies. Returns self."""
        message = self.message
        if message.endswith(f" {supported}"):  # given as the hint: printed once, at the end
            message = message[:-len(supported) - 1]
        self.message, self.hint = message, supported
        self.args = (f"{message}\n{supported}",)
        return self



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
    (Raised by `keras_ebnn.export` and the exporters; also importable as keras_ebnn.exporting.BudgetError.)"""
