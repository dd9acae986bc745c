"""Loading a Keras/Larq model file (keras_ebnn.frontend.lowering.load_model, which re-exports it; keras_ebnn.ir.graph.lower
reads model files with it too)."""
import contextlib

from .._tf import import_larq
from ..errors import ModelFileError


def load_model(path, trust_model=False, custom_objects_file=None, isolate=None, custom_objects=None):
    """Load a .keras / .h5 file (or, trusted only, a SavedModel directory) with larq's objects registered.

    The file is read once, into a private copy named after its format (`keras_ebnn.frontend.safe_load.prepare`:
    FIFOs, ambiguous zip+HDF5 files and name/content mismatches are refused). Unless `trust_model` is
    True, that copy's configuration is checked without Keras (Lambda layers, custom classes, modules
    outside Keras/larq, SavedModel graphs raise `UnsafeModelError`; absurd sizes, HDF5 external
    storage / links / virtual datasets / user blocks and arrays larger than the configuration allows
    raise `ModelFileError`), in a child process with memory and time limits (keras_ebnn.frontend.isolation;
    `isolate=False` checks in this process). Keras then loads the checked copy (.keras with its
    safe_mode on as well) under a time limit; the copy is removed afterwards. Both errors are
    `UnsupportedModelError`s. Pass trust_model=True only for files you trust like a Python script.
    custom_objects_file: a Python file whose `custom_objects` dict (or, without one, its public
    classes and functions) is passed to Keras; it runs that file, so it needs trust_model=True.
    custom_objects: the same as a dict ({name: class or function}, as Keras's loader takes it; e.g. a
    model whose class is a subclass of Sequential); it also needs trust_model=True.
    """
    from . import isolation
    from ..errors import printable
    from .safe_load import prepared_model_file, short_error
    if custom_objects and not trust_model:
        raise ValueError("custom_objects needs trust_model=True: loading custom classes runs their code")
    if custom_objects_file is not None:
        custom_objects = {**(custom_objects or {}), **_custom_objects(custom_objects_file, trust_model)}
    with prepared_model_file(path, trust_model=trust_model, isolate=isolate) as (kind, private):
        tf, lq = import_larq()
        try:
            with isolation.reading_timer(phase="load") if isolation.in_child() else contextlib.nullcontext():
                if kind == "keras":
                    model = tf.keras.models.load_model(str(private), compile=False, safe_mode=not trust_model,
                                                       custom_objects=custom_objects)
                elif kind == "h5":  # via a file object (see safe_load._open_h5: no inode reuse)
                    import h5py
                    with open(private, "rb") as fobj, h5py.File(fobj, "r") as h5:
                        model = tf.keras.models.load_model(h5, compile=False, custom_objects=custom_objects)
                else:  # a trusted SavedModel directory
                    model = tf.keras.models.load_model(str(private), compile=False,
                                                       custom_objects=custom_objects)
        except MemoryError:
            raise ModelFileError(f"could not load model file {printable(path)}: out of memory") from None
        except Exception as exc:  # keep the loader's message, under our exception type
            raise ModelFileError(f"could not load model file {printable(path)}: "
                                 f"{printable(short_error(exc))}") from exc
    if not getattr(model, "inputs", None):  # e.g. an InputLayer without shape: nothing was built
        raise ModelFileError(f"could not load model file {printable(path)}: the model has no defined input "
                             "shape, so its weights were not loaded")
    return model


def _custom_objects(path, trust_model):
    """The custom objects a trusted Python file defines (see load_model), or None."""
    if path is None:
        return None
    if not trust_model:
        raise ValueError("custom_objects_file runs a Python file: it needs trust_model=True (--trust-model)")
    import runpy
    namespace = runpy.run_path(str(path))
    if isinstance(namespace.get("custom_objects"), dict):
        return dict(namespace["custom_objects"])
    return {k: v for k, v in namespace.items() if not k.startswith("_") and callable(v)
            and getattr(v, "__module__", None) == namespace.get("__name__")}
