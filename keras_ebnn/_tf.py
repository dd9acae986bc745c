"""Import TensorFlow with the legacy Keras (tf-keras) that larq 0.14 needs.

larq only works with Keras 2 (`tf-keras`), selected by `TF_USE_LEGACY_KERAS=1` *before* TensorFlow is
first imported. keras_ebnn sets the variable for the user; if TensorFlow was already imported with
Keras 3, or tf-keras / larq are missing, a clear `EnvironmentError` says what to do.
"""
import os
import sys

_HELP = (
    "keras_ebnn needs TensorFlow with legacy Keras (the `tf-keras` package) and larq 0.14. "
    "Install them with `pip install tensorflow tf-keras larq`, and either import keras_ebnn before "
    "TensorFlow or set TF_USE_LEGACY_KERAS=1 in the environment before starting Python."
)


def import_tf():
    """Return the `tensorflow` module configured for tf-keras, importing it if needed."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise EnvironmentError(f"TensorFlow is not installed. {_HELP}") from exc
    try:
        import tf_keras  # noqa: F401
    except ImportError as exc:
        raise EnvironmentError(f"The tf-keras package is not installed. {_HELP}") from exc
    if not tf.keras.Model.__module__.startswith("tf_keras"):
        raise EnvironmentError(
            "TensorFlow was imported with Keras 3 before keras_ebnn could select legacy Keras. "
            f"{_HELP}"
        )
    return tf


def import_larq():
    tf = import_tf()
    try:
        import larq
    except ImportError as exc:
        hint = (" On Python >= 3.13 run `python -m keras_ebnn.setup_larq` (larq 0.14 pins numpy<2, which "
                "has no wheels there; it runs on numpy 2)." if sys.version_info >= (3, 13) else "")
        raise EnvironmentError(f"larq is not installed. {_HELP}{hint}") from exc
    return tf, larq
