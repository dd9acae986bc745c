"""Import TensorFlow with the legacy Keras (tf-keras) that larq 0.14 needs.

larq only works with Keras 2 (`tf-keras`), selected by `TF_USE_LEGACY_KERAS=1` *before* TensorFlow is
first imported. keras_ebnn sets the variable for the user; if TensorFlow was already imported with
Keras 3, or tf-keras / larq are missing, a clear `EnvironmentError` says what to do.
"""
import contextlib
import logging
import os
import sys
import tempfile
import warnings

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


@contextlib.contextmanager
def quiet_tensorflow(enabled=True):
    """Hide TensorFlow's start-up and runtime chatter for the duration of the `with` block.

    TensorFlow, absl, oneDNN and CUDA write log lines straight to file descriptor 2 from C++, some of
    them (absl's "All log messages before absl::InitializeLog()...") whatever TF_CPP_MIN_LOG_LEVEL
    says. Inside the block fd 2 points at a temporary file that is discarded, Python warnings are
    ignored and `logging` records are dropped, while Python's `sys.stderr` keeps writing to the real
    standard error (so the caller's own messages and progress bars still show). The block also sets
    TF_CPP_MIN_LOG_LEVEL=3 if it is unset and TensorFlow is not imported yet. With enabled=False it
    does nothing (a --verbose mode). Not thread-safe: it changes process-wide state.
    """
    if not enabled:
        yield
        return
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    old_stderr = sys.stderr
    try:
        old_stderr.flush()
        python_on_fd2 = old_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # e.g. replaced by a StringIO / pytest's capsys
        python_on_fd2 = False
    saved_fd = os.dup(2)
    sink = tempfile.TemporaryFile()
    os.dup2(sink.fileno(), 2)
    if python_on_fd2:  # keep Python-level writes on the real stderr (a copy of the saved descriptor)
        sys.stderr = open(os.dup(saved_fd), "w", buffering=1, encoding=old_stderr.encoding,
                          errors=old_stderr.errors)
    old_disable = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(old_disable)
        if python_on_fd2:
            sys.stderr.flush()  # left open: a logging handler created inside may hold it
            sys.stderr = old_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        sink.close()
