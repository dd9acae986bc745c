"""`lower()`: the chain view of the one lowering (keras_ebnn.ir.graph.lower_graph).

A Keras/Larq model whose fused graph is a chain of fused blocks -- an input block, binary conv / dense
blocks, an output dense block, each reading the one before it (Flatten ops in between) -- is returned
as a `keras_ebnn.ir.blocks.LoweredModel` of those very blocks (the search, the benches and users read its
blocks; `keras_ebnn.ir.graph.from_lowered` is the way back). There is no second lowering behind it: a
model whose graph is not such a chain is refused naming the first layer that lowers to another op.
"""
import dataclasses

import numpy as np

from ..ir.blocks import LoweredModel
from ..errors import UnsupportedModelError
from ..ir.graph import NOOP_LAYERS, lower_graph
from .model_loading import load_model  # (keras_ebnn.frontend.lowering.load_model: the Python door for model files)

CHAIN_TEXT = ("lower() / LoweredModel describe a chain of fused blocks only: binary layers (QuantConv2D / "
              "QuantDense with sign-type kernel quantizers, sign-type input quantizers after the first) each "
              "followed only by max pooling, BatchNormalization or monotone activations up to the next "
              "layer's sign, Flatten before a QuantDense, ending in a QuantDense (bias / BatchNormalization "
              "with finite values, softmax). keras_ebnn.export() and keras_ebnn.ir.graph.lower_graph take "
              "this model as a graph.")
# Keras layers a chain's blocks are made of (the layer `not_a_chain` names is the first one of another class)
BLOCK_LAYERS = {"QuantConv2D", "QuantDense", "MaxPooling2D", "BatchNormalization", "Flatten", "Rescaling", "Activation",
                "ReLU", "Softmax"} | NOOP_LAYERS
NON_FINITE_TEXT = ("Its bias / BatchNormalization give non-finite logit scales or offsets (inf or NaN weights "
                   "or statistics), so the final binary dense layer is no output block: check the trained "
                   "weights for inf/NaN.")


def _keras_layers(model):
    return [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]


def chain_blocks(graph):
    """The block ops of a fused graph in order when the graph is a chain of fused blocks (see the module
    docstring), else None."""
    ops = [op for op in graph.ops if op.kind != "reshape"]
    kinds = [op.params["block"].kind if op.kind == "block" else None for op in ops]
    if not ops or kinds[0] != "input_conv" or kinds[-1] != "output_dense" or ops[-1].output != graph.output or \
            any(k not in ("binary_conv", "binary_dense") for k in kinds[1:-1]):
        return None
    prod, prev = graph.producer(), graph.input
    for op in ops:
        src = op.inputs[0]
        while src in prod and prod[src].kind == "reshape":
            src = prod[src].inputs[0]
        if len(op.inputs) != 1 or src != prev:
            return None
        prev = op.output
    return ops


def chain_view(graph, model):
    """The LoweredModel of `graph` (lower_graph of the Keras `model`) when it is a chain of fused blocks,
    else None. Each block's source_layers are the Keras layers from its binary layer up to the next
    block's (a dense block leaves out a Flatten after it), as the C comments and reports name them."""
    ops = chain_blocks(graph)
    if ops is None:
        return None
    layers = [lay.name for lay in _keras_layers(model)]
    starts = [layers.index(op.layers[0]) for op in ops] + [len(layers)]
    blocks = []
    for op, start, end in zip(ops, starts, starts[1:]):
        block = op.params["block"]
        dense = block.kind in ("binary_dense", "output_dense")
        names = [n for n in layers[start:end] if not (dense and type(model.get_layer(n)).__name__ == "Flatten")]
        blocks.append(dataclasses.replace(block, source_layers=names))
    return LoweredModel(name=graph.name, input=blocks[0].input, blocks=blocks, softmax=graph.softmax)


def not_a_chain(graph, model):
    """The UnsupportedModelError of a graph that is not a chain of fused blocks: it lists the ops that are
    not blocks with their Keras layers, and names the first of those layers that no block can hold
    (else the first op's first layer)."""
    ops = [op for op in graph.ops if op.kind not in ("block", "reshape")] or \
        [op for op in graph.ops if op.kind == "block"]  # (blocks out of a chain's order)
    layers = {lay.name: (i, lay) for i, lay in enumerate(_keras_layers(model))}
    names = [n for op in ops for n in op.layers if n in layers]
    odd = [n for n in names if type(layers[n][1]).__name__ not in BLOCK_LAYERS]
    index, lay = layers[(odd or names)[0]] if names else (None, None)
    listing = "; ".join(f"{op.kind if op.kind != 'block' else op.params['block'].kind} "
                        f"({', '.join(repr(n) for n in op.layers) or 'no layer'})" for op in ops[:6])
    reason = (f"the model is not a chain of fused blocks: its graph has ops that are not fused binary blocks "
              f"(op (Keras layers): {listing}{'; ...' if len(ops) > 6 else ''}).")
    if any(not np.all(np.isfinite(o.params.get(k, 0))) for o in graph.ops if o.kind == "affine" for k in ("a64", "b64")):
        reason += " " + NON_FINITE_TEXT
    return UnsupportedModelError(reason, lay, index, CHAIN_TEXT)


def lower_any(model, name="model", float_weights="float32"):
    """(graph, chain view or None, the Keras model) of a Keras/Larq model or model file: `lower_graph`,
    then `chain_view`."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_model(model)
    graph = lower_graph(model, name, float_weights=float_weights)
    return graph, chain_view(graph, model), model


def lower(model, name="model"):
    """Lower a Keras/Larq model (or a path to a saved one) into a `LoweredModel` (a view of
    keras_ebnn.ir.graph.lower_graph's graph, see the module docstring).

    Raises `UnsupportedModelError` naming the first offending layer.
    """
    graph, lowered, model = lower_any(model, name)
    if lowered is None:
        raise not_a_chain(graph, model)
    return lowered
