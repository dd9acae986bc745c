"""keras-ebnn: train binarized neural networks with Keras/Larq, ship them as small, exact C.

The subpackages, in the order data flows through them:
  frontend/  Keras/Larq model -> IR (frontend.lowering.lower: fused blocks, ir.blocks), model files
             checked before loading (frontend.safe_load, frontend.model_loading), the audio front end
  ir/        the graph IR (ir.graph.lower_graph; a chain is the graph of its blocks: ir.graph.from_lowered)
             and the NumPy executor that defines the semantics (ir.graph_reference.run)
  passes/    conv/pool fusion, exact BatchNorm + sign thresholds, int8 weights, integer-only graphs
  planning/  the arena planner (planning.graph_memory), stack bounds (planning.stackcheck), boards
  exporters  (keras_ebnn.exporters) the one C emitter; Zephyr / Arduino back ends, runtime in runtime_c/
  frontdoor/ export (frontdoor.exporting: lower + plan + write + verify + report, atomically), the
             EbnnExport callback, verification, host C builds, reports
  train/     training recipe, model presets, datasets, and the model search (Optuna)
Top level: the doors below, keras_ebnn.convert (the keras-ebnn-convert CLI), errors, _tf.
"""
from ._tf import import_larq, import_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from .ir.blocks import LoweredModel  # noqa: F401
from .errors import UnsupportedModelError  # noqa: F401
from .frontend.lowering import lower  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name):  # the callback and export pull in TensorFlow layers: load on first use
    if name == "EbnnExport":
        from .frontdoor.callback import EbnnExport
        return EbnnExport
    if name in ("export", "BudgetError", "summary"):
        from .frontdoor import exporting
        return getattr(exporting, name)
    if name == "search":  # the module is callable: keras_ebnn.search(...) runs search.search(...)
        import importlib
        return importlib.import_module(".train.search", __name__)
    raise AttributeError(name)
