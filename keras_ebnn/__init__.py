"""keras-ebnn: train binarized neural networks with Keras/Larq, ship them as small, exact C.

The pieces, in the order data flows through them:
  lowering   (keras_ebnn.lowering.lower)   Keras/Larq model -> fused blocks (keras_ebnn.blocks)
  reference  (keras_ebnn.reference.run)    NumPy executor that defines the blocks' semantics
  exporters  (keras_ebnn.exporters)        C / Zephyr / Arduino back ends, runtime in runtime_c/
"""
from ._tf import import_larq, import_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TF loads)
from .blocks import LoweredModel  # noqa: F401
from .errors import UnsupportedModelError  # noqa: F401
from .lowering import lower  # noqa: F401

__version__ = "0.1.0"
