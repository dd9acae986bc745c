"""Lowering: a trained Keras/Larq model -> a `LoweredModel` of fused blocks (see `keras_ebnn.blocks`).

Steps:
  1. `model_layers` turns a Sequential or single-path functional model into a flat list of layers.
  2. `group_blocks` cuts that list into groups, one per QuantConv2D/QuantDense, each with the
     pooling / batch-norm / flatten layers that follow it, checking every layer on the way.
  3. `lower_group` turns each group into a block: geometry, weight bits and, via
     `keras_ebnn.thresholds`, the exact integer (or float32) threshold of every output channel.
"""
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import thresholds
from ._tf import import_larq
from .blocks import (BinaryConvBlock, BinaryDenseBlock, ConvGeometry, InputConvBlock,
                     LoweredModel, OutputDenseBlock)
from .errors import UnsupportedModelError
from .graph import NOOP_LAYERS, SIGN_QUANTIZERS  # the one IR's layer sets and geometry
from .graph import _conv_geometry as graph_conv_geometry, _pool_geometry as graph_pool_geometry
from .graph import _act_name as _activation_name, _input_spec, _qname as _quantizer_name
from .model_loading import load_model  # (keras_ebnn.lowering.load_model: the Python door for model files)

UNSUPPORTED_HINTS = {
    "Conv2D": "Float-weight convolutions cannot run on bits: use larq.layers.QuantConv2D with "
              "kernel_quantizer='ste_sign'.",
    "Dense": "Float-weight dense layers are not supported: use larq.layers.QuantDense with "
             "kernel_quantizer='ste_sign' (and input_quantizer='ste_sign').",
    "AveragePooling2D": "Only max pooling is supported (MaxPooling2D).",
    "GlobalAveragePooling2D": "Only max pooling followed by Flatten is supported.",
    "ReLU": "Activations between binary layers are not supported: the next layer's sign "
            "input_quantizer is the activation.",
    "DepthwiseConv2D": "Depthwise convolutions are not supported: use QuantConv2D.",
    "QuantDepthwiseConv2D": "Depthwise convolutions are not supported: use QuantConv2D.",
    "SeparableConv2D": "Separable convolutions are not supported: use QuantConv2D.",
    "QuantSeparableConv2D": "Separable convolutions are not supported: use QuantConv2D.",
    "Add": "Residual and branching graphs are not supported: the model must be a single chain.",
    "Concatenate": "Branching graphs are not supported: the model must be a single chain.",
}


@dataclass
class LayerGroup:
    """One QuantConv2D / QuantDense and the layers that follow it up to the next one."""

    index: int
    layer: object  # the QuantConv2D or QuantDense
    flatten_before: bool = False  # a Flatten sits between the previous block and this layer
    pool: Optional[object] = None
    pool_index: Optional[int] = None
    pre_bn: List[object] = field(default_factory=list)  # BatchNormalization before the pool
    post_bn: List[object] = field(default_factory=list)  # BatchNormalization after the pool
    flatten_after: bool = False
    softmax: bool = False
    layers: List[object] = field(default_factory=list)  # every Keras layer of the group, in order

    @property
    def is_conv(self):
        return type(self.layer).__name__ == "QuantConv2D"

    @property
    def output_layer(self):
        """The Keras layer whose output carries this block's result (before any softmax)."""
        for lay in reversed(self.layers):
            if not _is_softmax(lay):
                return lay
        return self.layer


# --------------------------------------------------------------------------------------------------
# 1. Reading the model


def model_layers(model):
    """Flat list of layers of a Sequential or single-path functional model (InputLayer excluded)."""
    tf, _ = import_larq()
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_model(model)
    if not isinstance(model, tf.keras.Model):
        raise UnsupportedModelError(f"expected a tf.keras Model or a model file, got {type(model).__name__}")
    layers = [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]
    for i, lay in enumerate(layers):
        if isinstance(lay, tf.keras.Model):
            raise UnsupportedModelError("nested models are not supported.", lay, i,
                                        "Build one flat Sequential or functional model.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; exactly one "
            "of each is supported.")
    if not isinstance(model, tf.keras.Sequential):
        _check_chain(model, layers)
    return model, layers


def _check_chain(model, layers):
    """A functional model must be a chain: each layer fed by the previous one only."""
    prev = model.inputs[0]
    for i, lay in enumerate(layers):
        nodes = [n for n in lay._inbound_nodes]
        if len(nodes) != 1:
            raise UnsupportedModelError("the layer is used more than once (shared layer).", lay, i)
        inputs = nodes[0].input_tensors
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if len(inputs) != 1 or inputs[0] is not prev:
            hint = UNSUPPORTED_HINTS["Add"]
            raise UnsupportedModelError("its input is not the previous layer's output "
                                        "(residual or branching graph).", lay, i, hint)
        prev = lay.output
    if prev is not model.outputs[0]:
        raise UnsupportedModelError("the model output is not the last layer's output "
                                    "(branching graph).", hint=UNSUPPORTED_HINTS["Add"])


# --------------------------------------------------------------------------------------------------
# 2. Grouping and checking layers


def _is_softmax(lay):
    name = type(lay).__name__
    if name == "Softmax":
        return True
    if name == "Activation":
        return _activation_name(lay.activation) == "softmax"
    return False


def _check_compute_layer(lay, i, first, last):
    cls = type(lay).__name__
    kq = _quantizer_name(lay.kernel_quantizer)
    if kq not in SIGN_QUANTIZERS:
        raise UnsupportedModelError(
            f"kernel_quantizer {kq!r} is not a sign quantizer: the weights must be binary.", lay, i,
            "Use kernel_quantizer='ste_sign' (or approx_sign / swish_sign).")
    iq = _quantizer_name(lay.input_quantizer)
    if iq is not None and iq not in SIGN_QUANTIZERS:
        raise UnsupportedModelError(f"input_quantizer {iq!r} is not a sign quantizer.", lay, i,
                                    "Use input_quantizer='ste_sign' (or approx_sign / swish_sign).")
    if iq is None and not first:
        raise UnsupportedModelError(
            "input_quantizer is None on a hidden layer, so its input would be float.", lay, i,
            "Hidden QuantConv2D/QuantDense layers need input_quantizer='ste_sign'.")
    act = _activation_name(lay.activation)
    if act not in ("linear",) and not (last and act == "softmax"):
        raise UnsupportedModelError(
            f"activation {act!r} is not supported on {cls}.", lay, i,
            "Leave activation=None: the next layer's sign input_quantizer binarizes (only the final "
            "QuantDense may use 'softmax').")
    if cls == "QuantConv2D":
        if lay.data_format != "channels_last":
            raise UnsupportedModelError("only data_format='channels_last' is supported.", lay, i)
        if tuple(lay.dilation_rate) != (1, 1):
            raise UnsupportedModelError(f"dilation_rate {lay.dilation_rate} is not supported.", lay, i,
                                        "Use dilation_rate=1.")
        if getattr(lay, "groups", 1) != 1:
            raise UnsupportedModelError(f"groups={lay.groups} is not supported.", lay, i)
        if lay.padding not in ("valid", "same"):
            raise UnsupportedModelError(f"padding {lay.padding!r} is not supported.", lay, i,
                                        "Use 'valid' or 'same'.")
        pv = float(np.asarray(lay.pad_values))
        if pv not in (0.0, 1.0):
            raise UnsupportedModelError(f"pad_values={pv} is not supported.", lay, i,
                                        "Use pad_values 0 or 1.")


def group_blocks(layers):
    """Cut the layer list into `LayerGroup`s and return (rescaling layer or None, groups)."""
    rescaling, groups, pending_flatten = None, [], False
    compute_idx = [i for i, lay in enumerate(layers) if type(lay).__name__ in ("QuantConv2D", "QuantDense")]
    if not compute_idx:
        raise UnsupportedModelError("the model has no QuantConv2D or QuantDense layer.")
    for i, lay in enumerate(layers):
        cls = type(lay).__name__
        group = groups[-1] if groups else None
        if cls in ("QuantConv2D", "QuantDense"):
            _check_compute_layer(lay, i, first=not groups, last=i == compute_idx[-1])
            if group is not None and group.is_conv and cls == "QuantDense" and not pending_flatten:
                raise UnsupportedModelError("QuantDense after a convolution needs a Flatten before it.", lay, i)
            if cls == "QuantConv2D" and (pending_flatten or (group is not None and not group.is_conv)):
                raise UnsupportedModelError("a convolution after Flatten or a dense layer is not "
                                            "supported.", lay, i)
            groups.append(LayerGroup(index=i, layer=lay, flatten_before=pending_flatten, layers=[lay]))
            pending_flatten = False
            if _activation_name(lay.activation) == "softmax":
                groups[-1].softmax = True
            continue
        if cls == "Rescaling":
            if i != 0:
                raise UnsupportedModelError("Rescaling is only supported as the first layer.", lay, i)
            rescaling = lay
            continue
        if cls == "Flatten":
            if group is not None and group.is_conv:
                group.flatten_after = True
                group.layers.append(lay)
            pending_flatten = True
            continue
        if cls in NOOP_LAYERS or (cls == "Activation" and _activation_name(lay.activation) == "linear"):
            if group is not None:
                group.layers.append(lay)
            continue
        if group is None:
            hint = UNSUPPORTED_HINTS.get(cls, "Only Rescaling, Flatten and no-op layers may come before the "
                                              "first QuantConv2D/QuantDense.")
            raise UnsupportedModelError("this layer is not supported before the first binary layer.",
                                        lay, i, hint)
        if _is_softmax(lay):
            if i != len(layers) - 1 or group.index != compute_idx[-1]:
                raise UnsupportedModelError("softmax is only supported as the last layer.", lay, i)
            group.softmax = True
            group.layers.append(lay)
            continue
        if cls not in ("MaxPooling2D", "BatchNormalization"):
            raise UnsupportedModelError(f"{cls} is not supported.", lay, i, UNSUPPORTED_HINTS.get(cls))
        if group.flatten_after:
            raise UnsupportedModelError(f"{cls} after Flatten is not supported.", lay, i,
                                        "Put pooling and batch normalization before Flatten.")
        if cls == "MaxPooling2D":
            if not group.is_conv:
                raise UnsupportedModelError("pooling after a dense layer is not supported.", lay, i)
            if group.pool is not None:
                raise UnsupportedModelError("a second pooling layer in one block is not supported.", lay, i,
                                            "Use one MaxPooling2D between two binary convolutions.")
            if lay.data_format != "channels_last":
                raise UnsupportedModelError("only data_format='channels_last' is supported.", lay, i)
            group.pool, group.pool_index = lay, i
            group.layers.append(lay)
            continue
        if cls == "BatchNormalization":
            axis = lay.axis if isinstance(lay.axis, (list, tuple)) else [lay.axis]
            rank = len(lay.input_shape)
            if [a % rank for a in axis] != [rank - 1]:
                raise UnsupportedModelError(f"BatchNormalization over axis {lay.axis} is not supported.",
                                            lay, i, "Normalize the channel axis (axis=-1).")
            (group.post_bn if group.pool is not None else group.pre_bn).append(lay)
            group.layers.append(lay)
    last = groups[-1]
    if last.is_conv:
        raise UnsupportedModelError("the model must end with a QuantDense (after Flatten).", last.layer,
                                    last.index)
    return rescaling, groups


# --------------------------------------------------------------------------------------------------
# 3. Blocks


def _sign_bits(lay, kernel):
    """Binary weights as booleans (True = +1), checked to be exactly +-1 after the quantizer."""
    tf, _ = import_larq()
    q = lay.kernel_quantizer
    values = np.asarray(q(tf.constant(kernel)) if callable(q) else np.where(kernel >= 0, 1.0, -1.0))
    if not np.all(np.abs(values) == 1.0):
        raise UnsupportedModelError("the kernel quantizer does not produce +-1 values.", lay)
    return values > 0


def _conv_geometry(group, in_shape):
    """The block's geometry: the graph lowering's conv geometry, then the group's max pool on its output."""
    geom = graph_conv_geometry(group.layer, group.index, tuple(in_shape), False)
    if group.pool is not None:
        p = graph_pool_geometry(group.pool, group.pool_index, geom.conv_shape + (group.layer.filters,), False)
        geom.pool, geom.pool_strides, geom.pool_pad, geom.out_hw = p["pool"], p["strides"], p["pad"], p["out_hw"]
    return geom


def _dense_as_conv(group, in_shape):
    """A first-layer QuantDense on an (H, W, C) input is a convolution with an H x W kernel."""
    h, w, c = in_shape
    return ConvGeometry(in_shape=tuple(in_shape), kernel=(h, w), strides=(1, 1), pad=(0, 0),
                        conv_shape=(1, 1), out_hw=(1, 1))


def lower_group(group, in_shape, spec=None):
    """Lower one group to a block. `spec` is the InputSpec for the first group, else None."""
    lay = group.layer
    kernel = np.asarray(lay.kernel.numpy(), dtype=np.float32)
    bias = np.asarray(lay.bias.numpy(), dtype=np.float32) if lay.use_bias else None
    bits = _sign_bits(lay, kernel)
    out_ch = kernel.shape[-1]
    names = [l.name for l in group.layers]
    if group.is_conv:
        geom = _conv_geometry(group, in_shape)
        weights = bits.transpose(3, 0, 1, 2)  # (KH, KW, C, O) -> (O, KH, KW, C)
    else:
        n = int(np.prod(in_shape))
        if kernel.shape[0] != n:
            raise UnsupportedModelError(f"expects {kernel.shape[0]} inputs but gets {n}.", lay, group.index)
        if spec is not None:
            geom = _dense_as_conv(group, in_shape)
            weights = bits.T.reshape((out_ch,) + tuple(in_shape))
        else:
            geom, weights = None, bits.T
    return geom, weights, bias, names


def lower(model, name="model"):
    """Lower a Keras/Larq model (or a path to a saved one) into a `LoweredModel`.

    Raises `UnsupportedModelError` naming the first offending layer.
    """
    model, layers = model_layers(model)
    model_name = name
    in_shape = tuple(int(d) for d in model.input_shape[1:])
    if len(in_shape) == 1:
        in_shape = (1, 1) + in_shape
    if len(in_shape) != 3 or any(d is None for d in in_shape):
        raise UnsupportedModelError(f"input shape {model.input_shape} is not supported; use a fixed "
                                    "(H, W, C) or (N,) input.")
    rescaling, groups = group_blocks(layers)
    spec = _input_spec(in_shape, rescaling, groups[0])
    blocks, shape = [], in_shape
    for gi, group in enumerate(groups):
        first, last = gi == 0, gi == len(groups) - 1
        geom, weights, bias, names = lower_group(group, shape, spec if first else None)
        if last:
            if first:
                raise UnsupportedModelError("a single QuantDense on the raw input has no binary layer "
                                            "to run; add a hidden layer.", group.layer, group.index)
            scale, offset = thresholds.output_affine(group, bias)
            if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(offset))):
                raise UnsupportedModelError("its bias / BatchNormalization give non-finite logit scales or "
                                            "offsets (inf or NaN weights or statistics).", group.layer,
                                            group.index, "Check the trained weights for inf/NaN.")
            blocks.append(OutputDenseBlock(weights=weights, scale=scale, offset=offset, source_layers=names))
            break
        rng = thresholds.block_range(spec if first else None, weights)
        thr, flip, pool_min = thresholds.block_thresholds(group, bias, rng, spec if first else None)
        weights = np.where(flip.reshape((-1,) + (1,) * (weights.ndim - 1)), ~weights, weights)
        if first:
            block = InputConvBlock(geometry=geom, input=spec, weights=weights, threshold=thr,
                                   pool_min=pool_min, source_layers=names)
        elif geom is not None:
            block = BinaryConvBlock(geometry=geom, weights=weights, threshold=thr, pool_min=pool_min,
                                    source_layers=names)
        else:
            block = BinaryDenseBlock(weights=weights, threshold=thr, source_layers=names)
        blocks.append(block)
        shape = block.out_shape
    return LoweredModel(name=model_name, input=spec, blocks=blocks, softmax=groups[-1].softmax)
