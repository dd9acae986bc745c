"""The one exception type raised for models keras-ebnn cannot export."""

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
    Attributes: `layer_index`, `layer_name`, `layer_class` (None when the problem is not one layer).
    """

    def __init__(self, reason, layer=None, index=None, hint=None):
        self.layer_index = index
        self.layer_name = getattr(layer, "name", None)
        self.layer_class = type(layer).__name__ if layer is not None else None
        where = ""
        if layer is not None:
            where = f"layer {index} '{self.layer_name}' ({self.layer_class}): "
        message = f"{where}{reason}"
        if hint:
            message += f" {hint}"
        message += f"\n{SUPPORTED}"
        super().__init__(message)
        self.reason = reason
