"""Exception types for models keras-ebnn cannot export or will not load.

`UnsupportedModelError` is the base: every error about the input model is one. Its `str()` keeps the
historical form (message, then the supported-layers list); `message` is the one-line description and
`hint` the supported-layers list of the lowering that raised it (the chain's SUPPORTED, or the graph
lowering's keras_ebnn.graph.GRAPH_SUPPORTED; None when the list does not fit the problem, e.g. a file
that could not be read). `ModelFileError` (unreadable / malformed file) and `UnsafeModelError` (a file that could
run code when loaded) are subclasses whose `str()` is the message alone.
"""

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
            where = f"layer {index} '{self.layer_name}' ({self.layer_class}): "
        self.message = f"{where}{reason}" + (f" {hint}" if hint else "")
        self.hint = supported  # the supported-layers list of the lowering that refused the model
        super().__init__(f"{self.message}\n{supported}")
        self.reason = reason

    def listing(self, supported):
        """This error with `supported` as its supported-layers list (the lowering that raised it)."""
        self.hint = supported
        self.args = (f"{self.message}\n{supported}",)
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
