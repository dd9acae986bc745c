"""keras-ebnn: train binarized neural networks with Keras/Larq, ship them as small, exact C.

The pieces, in the order data flows through them:
  graph      (keras_ebnn.graph.lower_graph) the one lowering: Keras/Larq model -> ops over bits/int/float32,
             binary layers fused into blocks (keras_ebnn.blocks)
  lowering   (keras_ebnn.lowering.lower)   the chain view: a graph that is a chain of fused blocks as a
             LoweredModel (keras_ebnn.graph.from_lowered: back to its graph)
  reference  (keras_ebnn.graph_reference.run) NumPy executor that defines the semantics of both
  exporters  (keras_ebnn.exporters)        one memory planner and C emitter (graph_c) for both;
                                           Zephyr / Arduino back ends, runtime in runtime_c/
  export     (keras_ebnn.exporting)           lower + plan + write + verify + report, atomically
  EbnnExport (keras_ebnn.callback)         the Keras callback; keras_ebnn.convert is the CLI
  search     (keras_ebnn.search)           find the most accurate model that fits a chip (Optuna)
"""
from ._tf import import_larq, import_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from .blocks import LoweredModel  # noqa: F401
from .errors import UnsupportedModelError  # noqa: F401
from .lowering import lower  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):  # the callback and export pull in TensorFlow layers: load on first use
    if name == "EbnnExport":
        from .callback import EbnnExport
        return EbnnExport
    if name in ("export", "BudgetError", "summary"):
        from . import exporting
        return getattr(exporting, name)
    if name == "search":  # the module is callable: keras_ebnn.search(...) runs search.search(...)
        import importlib
        return importlib.import_module(".search", __name__)
    raise AttributeError(name)
