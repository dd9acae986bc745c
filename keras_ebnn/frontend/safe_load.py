"""Check a model file before Keras reads it, so that converting an untrusted file never runs its code.

Keras model files can carry code: a `Lambda` layer stores Python bytecode that `.h5` loading runs,
a config entry's `module` field makes the `.keras` loader import that module, and a custom class
runs whatever its `from_config` does. keras-ebnn therefore reads the model's configuration with
plain zipfile / json / h5py (no TensorFlow, nothing deserialized) and accepts it only if every
object in it is a Keras built-in or larq class from an explicit allow-list:

* The file is read once (`private_copy`): a regular file only, copied into a private folder under
  the canonical name of the format its content has (model.keras for a zip archive, model.h5 for
  HDF5), so Keras loads the very bytes that were checked and picks its loader as the check did.
  Zip+HDF5 polyglots, HDF5 user blocks and names that contradict the content are refused.
* `.keras` (zip): only config.json / metadata.json / model.weights.h5 members; `config.json` is
  checked, then model.weights.h5 (size against the configuration, CRC, HDF5 checks below).
* `.h5` / HDF5: the `model_config` attribute, then every HDF5 object (`check_h5_objects`: no
  external storage / links / virtual datasets / plugin filters, arrays within the configuration's
  weight bound) -- nothing but attributes is read.
* The configuration's sizes are bounded (`keras_ebnn.frontend.size_bound.model_bound`).
* SavedModel directory: refused unless trusted, because its TensorFlow graph can hold arbitrary
  ops (file writes, ...) that no configuration check can vouch for.

`prepare` does all of this in the calling process; `prepared_model_file` does it in a child process
with memory and time limits (keras_ebnn.frontend.isolation), the way `keras_ebnn.frontend.lowering.load_model` and the
CLI use it.

`Lambda`, `TFOpLambda`/`SlicingOpLambda` (call TensorFlow functions by name; a TFOpLambda of one of the
plain-arithmetic functions in TF_OP_FUNCTIONS, e.g. `x + y`, is admitted), serialized lambdas and
any class, function or module outside the allow-list raise `UnsafeModelError` naming the layer (name
and class). `trust_model=True` (CLI: `--trust-model`) skips the check; use it only for files whose
origin you trust as you would trust a Python script. Unreadable or malformed files raise
`ModelFileError` ("could not read model file X: ...").

The allow-list admits classes that are safe to *load*; whether keras-ebnn can *export* them is
decided later by the lowering (e.g. `Conv2D` loads fine and is then reported as unsupported).
"""
import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ModelFileError, UnsafeModelError, printable
from .size_bound import SizeError, estimated_weights, model_bound  # noqa: F401  (estimated_weights: API)

MAX_ARCHIVE_BYTES = 2 * 1024 ** 3  # a .keras archive whose members unpack to more is refused
MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a model configuration is a few KB; refuse absurd sizes
MAX_DEPTH = 64  # nesting of configuration objects (models in models, wrappers, ...)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_WEIGHTS = 1 << 27  # refuse configurations whose weights alone would need more than 512 MB
MAX_ACTIVATION = 1 << 28  # elements of one layer output (1 GB of float32 per input)
MAX_FILE_BYTES = 1 << 30  # model files larger than this are not read
MAX_ZIP_MEMBERS = 16
KERAS_MEMBERS = frozenset({"config.json", "metadata.json", "model.weights.h5"})
WEIGHTS_MEMBER = "model.weights.h5"
MAX_H5_OBJECTS = 100_000  # groups + datasets of one HDF5 file
MAX_H5_DEPTH = 32
MAX_INT_MAGNITUDE = 2 ** 64  # any integer in a configuration (seeds included)

# Keras built-in layers that run no user code. Lambda, TFOpLambda and SlicingOpLambda are left out on
# purpose; so are preprocessing layers that read vocabularies from files or call user functions.
KERAS_LAYERS = frozenset("""
    InputLayer Activation ActivityRegularization Add AdditiveAttention AlphaDropout Attention Average
    AveragePooling1D AveragePooling2D AveragePooling3D AvgPool1D AvgPool2D AvgPool3D BatchNormalization
    Bidirectional CategoryEncoding CenterCrop Concatenate Conv1D Conv1DTranspose Conv2D Conv2DTranspose
    Conv3D Conv3DTranspose ConvLSTM1D ConvLSTM2D ConvLSTM3D Convolution1D Convolution1DTranspose
    Convolution2D Convolution2DTranspose Convolution3D Convolution3DTranspose Cropping1D Cropping2D
    Cropping3D Dense DepthwiseConv1D DepthwiseConv2D Discretization Dot Dropout ELU EinsumDense
    Embedding Flatten GRU GRUCell GaussianDropout GaussianNoise GlobalAveragePooling1D
    GlobalAveragePooling2D GlobalAveragePooling3D GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D
    GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D GlobalMaxPooling1D GlobalMaxPooling2D
    GlobalMaxPooling3D GroupNormalization Identity LSTM LSTMCell LayerNormalization LeakyReLU
    LocallyConnected1D LocallyConnected2D Masking MaxPool1D MaxPool2D MaxPool3D MaxPooling1D
    MaxPooling2D MaxPooling3D Maximum Minimum MultiHeadAttention Multiply Normalization PReLU Permute
    RNN RandomBrightness RandomContrast RandomCrop RandomFlip RandomHeight RandomRotation
    RandomTranslation RandomWidth RandomZoom ReLU RepeatVector Rescaling Reshape Resizing
    SeparableConv1D SeparableConv2D SeparableConvolution1D SeparableConvolution2D SimpleRNN
    SimpleRNNCell Softmax SpatialDropout1D SpatialDropout2D SpatialDropout3D SpectralNormalization
    StackedRNNCells Subtract ThresholdedReLU TimeDistributed UnitNormalization UpSampling1D
    UpSampling2D UpSampling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D
""".split())
KERAS_MODELS = frozenset({"Sequential", "Functional", "Model"})
KERAS_OBJECTS = frozenset("""
    Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity LecunNormal LecunUniform Ones
    Orthogonal RandomNormal RandomUniform TruncatedNormal VarianceScaling Zeros
    L1 L1L2 L2 OrthogonalRegularizer
    MaxNorm MinMaxNorm NonNeg RadialConstraint UnitNorm
    Policy DTypePolicy FloatDTypePolicy
""".split())
LARQ_CLASSES = frozenset("""
    QuantConv1D QuantConv2D QuantConv2DTranspose QuantConv3D QuantConv3DTranspose QuantDense
    QuantDepthwiseConv2D QuantLocallyConnected1D QuantLocallyConnected2D QuantSeparableConv1D
    QuantSeparableConv2D
    ApproxSign DoReFa DoReFaQuantizer MagnitudeAwareSign NoOp NoOpQuantizer SteHeaviside SteSign
    SteTern SwishSign
    WeightClip weight_clip
""".split())
ALLOWED_CLASSES = KERAS_LAYERS | KERAS_MODELS | KERAS_OBJECTS | LARQ_CLASSES
# Functions referenced by name (activations, quantizers, initializer/regularizer/constraint aliases).
ALLOWED_FUNCTIONS = frozenset("""
    linear relu elu selu gelu sigmoid hard_sigmoid softmax softplus softsign swish tanh exponential mish
    ste_sign approx_sign swish_sign ste_heaviside ste_tern magnitude_aware_sign dorefa_quantizer
    hard_tanh leaky_tanh
    weight_clip
    constant glorot_normal glorot_uniform he_normal he_uniform identity lecun_normal lecun_uniform ones
    orthogonal random_normal random_uniform truncated_normal variance_scaling zeros
    l1 l2 l1_l2 orthogonal_regularizer max_norm min_max_norm non_neg radial_constraint unit_norm
""".split())
# Data wrappers of the .keras format (tensors and arrays given as values; no code).
DATA_CLASSES = frozenset({"__tensor__", "__numpy__", "__bytes__"})
DATA_DTYPES = frozenset("""bool float16 bfloat16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32
    uint64""".split())  # a structured or sub-array dtype could turn a tiny value into gigabytes
ALLOWED_MODULE_ROOTS = ("keras", "tf_keras", "larq")
CODE_CLASSES = {
    "Lambda": "a Lambda layer stores Python code that loading would run",
    "TFOpLambda": "a TFOpLambda layer calls a TensorFlow function chosen by name in the file",
    "SlicingOpLambda": "a SlicingOpLambda layer calls a TensorFlow function chosen by name in the file",
    "__lambda__": "a serialized Python lambda would be run",
}
# TFOpLambda layers (Python operators / tf.* calls in a functional model) whose recorded TensorFlow
# function is one of these plain-arithmetic ones: loading such a layer calls only that function, and the
# graph lowering takes exactly these (keras_ebnn/ir/graph.py TF_OPS). Any other TFOpLambda stays refused.
TF_OP_FUNCTIONS = frozenset({"__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
                             "math.negative", "reshape", "nn.relu", "nn.relu6", "math.tanh", "math.sigmoid"})
# Config keys whose string value Keras resolves by name to a function or class.
_NAMED_OBJECT_KEYS = ("activation", "recurrent_activation")
_NAMED_OBJECT_SUFFIXES = ("_initializer", "_regularizer", "_constraint", "_quantizer")
TRUST_HINT = ("Refusing to load it: only pass --trust-model (trust_model=True) if you trust this file "
              "as much as a Python script you would run.")


def read_model_config(path):
    """The model configuration of a .keras archive or .h5 file, as parsed JSON (no Keras involved).

    Returns (kind, config) with kind "keras" or "h5". Raises ModelFileError if the file cannot be read
    or is not a model file (a SavedModel directory gives kind "savedmodel" and config None). Reads a
    private copy (`private_copy`), so the format is decided from the content, as `prepare` does.
    """
    path = Path(path)
    if path.is_dir():
        return _directory_kind(path), None
    with tempfile.TemporaryDirectory(prefix="keras-ebnn-") as work:
        kind, copy = private_copy(path, work)
        if kind == "keras":
            with _open_zip(copy, path) as zf:
                return kind, _keras_config(zf, path)
        with _open_h5(copy, path) as f:
            return kind, _h5_config(f, path)


def _name(path):
    """A path for a message (control characters escaped)."""
    return printable(str(path))


def _directory_kind(path):
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return "savedmodel"
    raise ModelFileError(f"could not read model file {_name(path)}: a directory, but not a SavedModel "
                         "(no saved_model.pb in it)")


def _unreadable(path, why):
    return ModelFileError(f"could not read model file {_name(path)}: {why}")


def private_copy(path, workdir):
    """Copy the regular file `path` into `workdir` under the canonical name of its format.

    Returns (kind, copy): ("keras", workdir/model.keras) for a zip archive, ("h5", workdir/model.h5)
    for an HDF5 file. Everything after this reads the copy, so the bytes checked are the bytes Keras
    loads, and Keras picks its loader from the canonical name exactly as the check did. Refused with
    ModelFileError: anything but a regular file (a FIFO would block forever), files over
    MAX_FILE_BYTES, files that are both a zip archive and HDF5 (one loader would read the one, the
    check the other), HDF5 with a user block, a name that says one format and content of the other
    (.keras / .h5 / .hdf5, any case), and content of neither format.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _unreadable(path, exc.strerror or exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise _unreadable(path, "not a regular file (a FIFO, device or socket is never opened)")
    if st.st_size > MAX_FILE_BYTES:
        raise _unreadable(path, f"{st.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} keras-ebnn reads")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(path, exc.strerror or exc) from None
    raw = Path(workdir) / "model.bin"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between stat and open
            raise _unreadable(path, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as src, open(raw, "wb") as dst:
            size = 0
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > MAX_FILE_BYTES:
                    raise _unreadable(path, f"more than the {MAX_FILE_BYTES:,} bytes keras-ebnn reads")
                dst.write(chunk)
    except OSError as exc:
        raise _unreadable(path, exc.strerror or exc) from None
    finally:
        os.close(fd)
    kind = _sniff(raw, path)
    copy = raw.with_name("model.keras" if kind == "keras" else "model.h5")
    os.replace(raw, copy)
    return kind, copy


def _hdf5_offsets(f, size):
    """Offsets of the HDF5 signature where the HDF5 library looks for it (0, 512, 1024, 2048, ...)."""
    found = []
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        if f.read(8) == HDF5_SIGNATURE:
            found.append(offset)
        offset = 512 if offset == 0 else offset * 2
    return found


def _zip_member_starts(copy):
    """Offsets where the stored members' data begin (an embedded HDF5 weights file is fine there)."""
    starts = set()
    try:
        with zipfile.ZipFile(copy) as zf, open(copy, "rb") as f:
            for info in zf.infolist()[:MAX_ZIP_MEMBERS]:
                f.seek(info.header_offset + 26)
                head = f.read(4)
                if len(head) == 4:
                    starts.add(info.header_offset + 30 + int.from_bytes(head[:2], "little")
                               + int.from_bytes(head[2:], "little"))
    except Exception:  # not a readable archive: decided later, with a message
        pass
    return starts


def _sniff(copy, path):
    """"keras" or "h5" from the content of `copy`, agreeing with the name of `path` (see private_copy)."""
    size = copy.stat().st_size
    with open(copy, "rb") as f:
        head = f.read(4)
        hdf5 = _hdf5_offsets(f, size)
    is_zip = head == b"PK\x03\x04" or zipfile.is_zipfile(copy)
    lower = path.name.lower()
    if is_zip:
        stray = [o for o in hdf5 if o not in _zip_member_starts(copy)]
        if stray:
            raise _unreadable(path, f"both a zip archive and an HDF5 file (HDF5 signature at byte "
                                    f"{stray[0]}): refusing an ambiguous file, as Keras could load the "
                                    "one and the check read the other")
        if lower.endswith((".h5", ".hdf5")):
            raise _unreadable(path, "named as an HDF5 (.h5) file but its content is a zip archive")
        return "keras"
    if hdf5 and hdf5[0] != 0:
        raise _unreadable(path, f"an HDF5 file with a user block (data before the HDF5 signature at "
                                f"byte {hdf5[0]}): not something Keras writes, refused")
    if hdf5:
        if lower.endswith(".keras"):
            raise _unreadable(path, "named as a .keras archive but its content is an HDF5 file")
        return "h5"
    if lower.endswith(".keras"):
        raise _unreadable(path, "not a valid .keras archive (not a zip file)")
    if lower.endswith((".h5", ".hdf5")):
        raise _unreadable(path, "not a valid .h5 model file (no HDF5 signature)")
    raise _unreadable(path, "not a .keras archive, an HDF5 (.h5) file or a SavedModel directory")


def _open_zip(copy, path):
    try:
        return zipfile.ZipFile(copy)
    except Exception as exc:
        raise _unreadable(path, f"not a valid .keras archive ({short_error(exc)})") from exc


def _keras_config(zf, path):
    """config.json of an opened .keras archive (members checked first: names, sizes, methods)."""
    what = f"could not read model file {_name(path)}: not a valid .keras archive"
    try:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ModelFileError(f"{what} ({len(infos)} members)")
        names = [info.filename for info in infos]
        extra = sorted(set(names) - KERAS_MEMBERS)
        if extra:
            raise ModelFileError(f"{what} (member {printable(extra[0][:80])!r}: a model archive holds only "
                                 f"{', '.join(sorted(KERAS_MEMBERS))}; assets and .npz weights are refused)")
        if len(set(names)) != len(names):
            raise ModelFileError(f"{what} (a member name appears twice)")
        for info in infos:
            if info.flag_bits & 0x1:
                raise ModelFileError(f"{what} (member {info.filename!r} is encrypted)")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFileError(f"{what} (member {info.filename!r} uses compression method "
                                     f"{info.compress_type})")
        unpacked = sum(info.file_size for info in infos)
        if unpacked > MAX_ARCHIVE_BYTES:  # a zip bomb would take minutes to check and to load
            raise ModelFileError(f"{what} (its members unpack to {unpacked:,} bytes, more than "
                                 f"{MAX_ARCHIVE_BYTES:,})")
        try:
            info = zf.getinfo("config.json")
        except KeyError:
            raise ModelFileError(f"{what} (no config.json in it)") from None
        if info.file_size > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{what} (config.json is {info.file_size} bytes)")
        raw = zf.read(info)  # CRC checked
        if "metadata.json" in names and zf.getinfo("metadata.json").file_size > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{what} (metadata.json is too large)")
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError, OverflowError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{what} ({short_error(exc)})") from exc
    except Exception as exc:  # zlib.error, struct.error...: any failure here means a broken archive
        raise ModelFileError(f"{what} ({type(exc).__name__}: {short_error(exc)})") from exc
    return _parse_json(raw, f"could not read model file {_name(path)}: config.json")


def _check_keras_weights(zf, path, bound, workdir):
    """The archive's model.weights.h5: size against the bound, CRC, then the HDF5 checks."""
    what = f"could not read model file {_name(path)}: not a valid .keras archive"
    try:
        info = zf.getinfo(WEIGHTS_MEMBER)
    except KeyError:
        raise ModelFileError(f"{what} (no {WEIGHTS_MEMBER} in it)") from None
    limit = _weight_bytes_limit(bound)
    if info.file_size > limit:
        raise ModelFileError(f"could not read model file {_name(path)}: {WEIGHTS_MEMBER} is "
                             f"{info.file_size:,} bytes, more than the configuration's weights can take "
                             f"({limit:,})")
    target = Path(workdir) / "weights-check.h5"
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        if zf.testzip() is not None:  # every member's CRC (sizes are bounded above)
            raise ModelFileError(f"{what} (a member is corrupted: CRC mismatch)")
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{what} ({WEIGHTS_MEMBER}: {short_error(exc)})") from exc
    try:
        with open(target, "rb") as f:
            offsets = _hdf5_offsets(f, target.stat().st_size)
        if offsets[:1] != [0]:
            raise ModelFileError(f"could not read model file {_name(path)}: {WEIGHTS_MEMBER} is not a "
                                 "plain HDF5 file" + (" (it has a user block)" if offsets else ""))
        with _open_h5(target, path, f" ({WEIGHTS_MEMBER})") as f:
            check_h5_objects(f, path, bound, f" ({WEIGHTS_MEMBER})")
    finally:
        target.unlink()


def _weight_bytes_limit(bound):
    """Bytes of stored arrays a configuration with `bound` weights can explain (8-byte values, the
    optimizer's copies, HDF5 overhead)."""
    return 8 * _h5_elements_limit(bound) + (16 << 20)


def _h5_elements_limit(bound):
    return 4 * bound + 4096


def _open_h5(copy, path, where=""):
    what = f"could not read model file {_name(path)}: not a valid .h5 model file{where}"
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py comes with TensorFlow
        raise ModelFileError(f"could not read model file {_name(path)}: h5py is not installed") from exc
    # Through a Python file object, not the path: the HDF5 library recognises a file it already has
    # open by device and inode, and a deleted private copy's inode can come back for the next one.
    fobj = open(copy, "rb")
    try:
        f = h5py.File(fobj, "r")
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError...
        fobj.close()
        raise ModelFileError(f"{what} ({short_error(exc)})") from exc
    try:
        if f.id.get_create_plist().get_userblock():
            raise ModelFileError(f"{what} (it has an HDF5 user block)")
    except ModelFileError:
        f.close()
        fobj.close()
        raise
    except Exception as exc:
        f.close()
        fobj.close()
        raise ModelFileError(f"{what} ({short_error(exc)})") from exc
    return _H5Guard(f, what, fobj)


class _H5Guard:
    """`with`: the open h5py File; any h5py failure inside becomes a ModelFileError."""

    def __init__(self, f, what, fobj):
        self.f, self.what, self.fobj = f, what, fobj

    def __enter__(self):
        return self.f

    def __exit__(self, kind, exc, tb):
        try:
            self.f.close()
        except Exception:
            pass
        self.fobj.close()
        if exc is not None and not isinstance(exc, ModelFileError) and isinstance(exc, Exception):
            raise ModelFileError(f"{self.what} ({short_error(exc)})") from exc
        return False


def _attribute_size_ok(obj, name, path):
    """Refuse an attribute whose stored size is absurd before h5py reads it; then read it."""
    aid = obj.attrs.get_id(name)
    try:
        size = aid.get_storage_size()
    except Exception:  # h5py raises for an empty attribute (size 0)
        size = 0
    shape = aid.shape or ()
    elements = 1
    for d in shape:
        elements = min(elements * int(d), 1 << 62)
    if max(size, elements) > MAX_CONFIG_BYTES:  # (a variable-length string's text is counted on read)
        raise _unreadable(path, f"HDF5 attribute {printable(name[:80])!r} is "
                                f"{max(size, elements):,} bytes, more than {MAX_CONFIG_BYTES:,}")
    obj.attrs[name]  # read it (bounded above): a damaged attribute fails here, in the checking child


def _h5_config(f, path):
    what = f"could not read model file {_name(path)}: not a valid .h5 model file"
    if "model_config" not in f.attrs:
        raise ModelFileError(f"{what} (no model_config attribute: a weights-only file?)")
    _attribute_size_ok(f, "model_config", path)
    raw = f.attrs["model_config"]
    if hasattr(raw, "tobytes") and not isinstance(raw, (bytes, str)):
        raw = raw.tobytes()
    if not isinstance(raw, (bytes, str)):
        raise ModelFileError(f"{what} (model_config is not text)")
    return _parse_json(raw, f"could not read model file {_name(path)}: model_config")


def check_h5_objects(f, path, bound, where=""):
    """Walk every group, dataset and attribute of an open HDF5 file without reading any data.

    Refused (ModelFileError): external links and soft links (Keras writes hard links only),
    datasets with external storage (their bytes would come from another file, e.g. /proc/self/environ,
    and end up in the generated C), virtual datasets, filters other than deflate / shuffle /
    fletcher32 (others load plugins), non-numeric datasets, attributes over MAX_CONFIG_BYTES, more
    than MAX_H5_OBJECTS objects or groups nested deeper than MAX_H5_DEPTH, and arrays larger than the
    configuration's weight bound `bound` (one array), or 4 x bound + 4096 values in all (weights
    plus an optimizer's copies). Then (all bounded) every attribute and array is read once.
    """
    import h5py

    def refuse(name, why):
        raise _unreadable(path, f"HDF5 object {printable(name[:120])!r}{where}: {why}")

    each_limit, total_limit = bound + 4096, _h5_elements_limit(bound)
    total = objects = 0
    datasets = []
    f.visit(lambda name: None)  # every group's index and heap read once: damaged ones fail here
    stack = [(f, "/", 0)]
    while stack:
        group, gname, depth = stack.pop()
        for name in group.attrs:
            _attribute_size_ok(group, name, path)
        for key in group:
            full = gname.rstrip("/") + "/" + key
            objects += 1
            if objects > MAX_H5_OBJECTS:
                refuse(full, f"the file holds more than {MAX_H5_OBJECTS:,} objects")
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                refuse(full, "an external link (to another file) is refused")
            if not isinstance(link, h5py.HardLink):
                refuse(full, f"a {type(link).__name__} is refused (Keras writes plain groups and datasets)")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                if depth + 1 > MAX_H5_DEPTH:
                    refuse(full, f"groups nested more than {MAX_H5_DEPTH} deep")
                stack.append((obj, full, depth + 1))
                continue
            if not isinstance(obj, h5py.Dataset):
                refuse(full, f"a {type(obj).__name__} is not a group or dataset")
            for name in obj.attrs:
                _attribute_size_ok(obj, name, path)
            dcpl = obj.id.get_create_plist()
            if dcpl.get_external_count() > 0:
                refuse(full, "its data is stored in an external file, which is refused (it would copy "
                             "that file's bytes into the model)")
            if obj.is_virtual or dcpl.get_layout() not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS,
                                                            h5py.h5d.CHUNKED):
                refuse(full, "a virtual dataset (data mapped from other datasets or files) is refused")
            for i in range(dcpl.get_nfilters()):
                code = dcpl.get_filter(i)[0]
                if code not in (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE,
                                h5py.h5z.FILTER_FLETCHER32):
                    refuse(full, f"HDF5 filter {code} is refused (only deflate, shuffle, fletcher32)")
            dtype = obj.dtype
            if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None \
                    or dtype.itemsize > 8:
                refuse(full, f"data type {printable(str(dtype))[:60]} is not a numeric weight type")
            shape = obj.shape or ()
            elements = 1
            for d in shape:
                elements = min(elements * int(d), 1 << 62)
            if elements > each_limit:
                refuse(full, f"shape {tuple(int(d) for d in shape)} ({elements:,} values) is larger than "
                             f"the configuration's weights allow ({each_limit:,})")
            if obj.chunks is not None:
                chunk = 1
                for d in obj.chunks:
                    chunk = min(chunk * int(d), 1 << 62)
                if chunk > each_limit:
                    refuse(full, f"chunks of {chunk:,} values, more than the model's weights ({each_limit:,})")
            total += elements
            if total > total_limit:
                refuse(full, f"the file's arrays hold more than {total_limit:,} values, more than the "
                             "configuration's weights allow")
            datasets.append(obj)
    for obj in datasets:  # all checked and bounded: read them once here (in the checking child), so
        obj[()]           # a damaged chunk index or block crashes the child, not the caller's Keras
    return total


def _parse_json(raw, what):
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{what} is not valid JSON ({short_error(exc)})") from exc
    except RecursionError:
        raise ModelFileError(f"{what} is nested too deeply") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{what} is not a JSON object")
    return config


def short_error(exc, limit=300):
    """`exc` as one line of at most `limit` characters (a loader's message can span pages)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def check_config(config, path="model"):
    """Raise UnsafeModelError if `config` (a parsed model config) names anything outside the allow-list.

    Every JSON object with a "class_name" is checked (class, "module", "registered_name"), and so are
    string values of activation / *_initializer / *_regularizer / *_constraint / *_quantizer keys. The
    top level's "compile_config" is skipped: models are loaded with compile=False, which ignores it.
    Raises ModelFileError if the configuration is malformed (not a model, too deep, wrong types).
    """
    if not isinstance(config.get("class_name"), str) or not isinstance(config.get("config"), dict):
        raise ModelFileError(f"could not read model file {_name(path)}: the configuration is not a Keras model "
                             "(no class_name / config)")
    top = {k: v for k, v in config.items() if k != "compile_config"}
    try:
        _walk(top, path, layer=None, depth=0)
        weights, activation = model_bound(config)
    except (TypeError, AttributeError, ValueError, IndexError, KeyError, OverflowError) as exc:
        if isinstance(exc, ModelFileError):  # includes UnsafeModelError
            raise
        raise ModelFileError(f"could not read model file {_name(path)}: malformed configuration "
                             f"({printable(short_error(exc))})") from exc
    if weights > MAX_WEIGHTS:
        raise ModelFileError(
            f"could not read model file {_name(path)}: its configuration describes up to "
            f"{float(weights):.3g} weights, "
            f"more than the {MAX_WEIGHTS:,} keras-ebnn accepts (a model for a microcontroller has far "
            "fewer; building it would exhaust memory; is the file corrupted?)")
    if activation > MAX_ACTIVATION:
        raise ModelFileError(
            f"could not read model file {_name(path)}: a layer of its configuration outputs up to "
            f"{float(activation):.3g} values per input, more than the {MAX_ACTIVATION:,} keras-ebnn "
            "accepts (is the file corrupted?)")
    return weights


_LAYER_KEYS = ("layers", "layer", "cell", "cells", "forward_layer", "backward_layer")


def _layer_label(node):
    """'layer NAME (CLASS)' for a layer's config object."""
    cfg = node.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        name = node.get("name") if isinstance(node.get("name"), str) else "?"
    return f"layer {name[:80]!r} ({printable(str(node.get('class_name'))[:80])})"


def _walk(node, path, layer, depth, key=None):
    """Check `node`; `layer` labels the enclosing layer, `key` is the key that holds `node`."""
    if depth > MAX_DEPTH:
        raise ModelFileError(f"could not read model file {_name(path)}: the configuration is nested more than "
                             f"{MAX_DEPTH} levels deep")
    if isinstance(node, list):
        for item in node:
            _walk(item, path, layer, depth + 1, key)
        return
    if type(node) is int and not -MAX_INT_MAGNITUDE <= node <= MAX_INT_MAGNITUDE:
        raise ModelFileError(f"could not read model file {_name(path)}: malformed configuration "
                             f"({layer or 'the model'} holds an integer beyond {MAX_INT_MAGNITUDE:,})")
    if not isinstance(node, dict):
        return
    if "class_name" in node:
        if key is None or key in _LAYER_KEYS:  # a model or a layer: errors below name it
            _check_object(node, path, _layer_label(node), None)
            layer = _layer_label(node)
        else:  # an object inside a layer (quantizer, initializer, ...): errors name the layer and key
            _check_object(node, path, layer, key)
    for k, value in node.items():
        if isinstance(value, str) and (k in _NAMED_OBJECT_KEYS or k.endswith(_NAMED_OBJECT_SUFFIXES)):
            _check_name(value, k, path, layer)
        elif isinstance(value, (dict, list, int)):
            _walk(value, path, layer, depth + 1, k if k != "config" else key)


def _refuse(path, layer, what, why):
    where = f"{layer}: " if layer else ""
    raise UnsafeModelError(f"model file {_name(path)}: {where}{what}{why}. {TRUST_HINT}", layer_label=layer)


def _check_object(node, path, layer, key):
    """Check one object with a class_name. `key` is None when the object is the layer `layer` itself."""
    cls, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
    if not isinstance(cls, str):
        raise ModelFileError(f"could not read model file {_name(path)}: malformed configuration (class_name "
                             f"{str(cls)[:60]!r} is not a string)")
    what = f"class {cls[:80]!r} " if key is None else f"{key} {cls[:80]!r} "
    tf_op = cls == "TFOpLambda" and key is None and isinstance(node.get("config"), dict) and \
        node["config"].get("function") in TF_OP_FUNCTIONS  # plain arithmetic (TF_OP_FUNCTIONS)
    if cls in CODE_CLASSES and not tf_op:
        _refuse(path, layer, "" if key is None else what, CODE_CLASSES[cls])
    if module is not None:
        ok = isinstance(module, str) and (
            module in ALLOWED_MODULE_ROOTS or module.startswith(tuple(r + "." for r in ALLOWED_MODULE_ROOTS))
            or (module == "builtins" and cls == "function"))
        if not ok:
            _refuse(path, layer, what, f"comes from module {str(module)[:80]!r}, not Keras or larq "
                                       "(loading would import that module)")
    if cls == "function":
        fn = node.get("config")
        if not isinstance(fn, str) or fn not in ALLOWED_FUNCTIONS:
            _refuse(path, layer, what, f"names function {str(fn)[:80]!r}, not a known Keras or larq "
                                       "function")
        return
    if tf_op:
        return
    if cls in DATA_CLASSES:
        cfg = node.get("config")
        dtype = cfg.get("dtype") if isinstance(cfg, dict) else None
        if cls != "__bytes__" and dtype is not None and dtype not in DATA_DTYPES:
            raise ModelFileError(f"could not read model file {_name(path)}: malformed configuration "
                                 f"({layer or 'the model'}: {cls} value of dtype {printable(str(dtype)[:40])!r}; "
                                 f"only {', '.join(sorted(DATA_DTYPES))})")
        return
    if cls not in ALLOWED_CLASSES:
        _refuse(path, layer, what, "is not a Keras built-in or larq class, so loading it could run "
                                   "its code")
    if registered is not None:
        parts = registered.split(">", 1) if isinstance(registered, str) else [None]
        if parts[-1] not in ALLOWED_CLASSES or (len(parts) == 2 and parts[0] not in ALLOWED_MODULE_ROOTS):
            _refuse(path, layer, what, f"is registered as {str(registered)[:80]!r}, not a Keras or "
                                       "larq built-in")


def _check_name(value, key, path, layer):
    parts = value.split(">", 1)
    known = parts[-1] in ALLOWED_FUNCTIONS or parts[-1] in ALLOWED_CLASSES
    if not known or (len(parts) == 2 and parts[0] not in ALLOWED_MODULE_ROOTS):
        _refuse(path, layer, f"{key} {value[:80]!r} ", "is not a Keras or larq built-in")


def check_model_file(path, trust_model=False):
    """Check that loading `path` with Keras cannot run code from it; return its kind.

    Returns "keras", "h5" or "savedmodel". With trust_model=False: raises UnsafeModelError for a
    SavedModel directory or a configuration naming a layer/object outside the allow-list, and
    ModelFileError for a missing, unreadable or malformed file (see `prepare`). With trust_model=True
    only the file's kind is determined from its content (a missing file still raises
    ModelFileError). Runs in this process; `prepared_model_file` runs the same in a child process.
    """
    with tempfile.TemporaryDirectory(prefix="keras-ebnn-") as work:
        return prepare(path, work, trust_model)[0]


def prepare(path, workdir, trust_model=False):
    """Everything keras-ebnn does with a model file before Keras loads it, in this process.

    Copies the file into `workdir` under its format's canonical name (`private_copy`), then, unless
    trust_model: checks the configuration (`check_config`: allow-list, size bound) and every HDF5
    object of the file (`check_h5_objects`: the .h5 itself or a .keras archive's model.weights.h5)
    against it. Returns (kind, path to load): ("keras" | "h5", the private copy) or ("savedmodel",
    the directory; only with trust_model). Raises ModelFileError / UnsafeModelError.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise ModelFileError(f"could not load model file {_name(path)}: it does not exist")
    if path.is_dir():
        if _directory_kind(path) == "savedmodel" and not trust_model:
            raise UnsafeModelError(
                f"model file {_name(path)}: a SavedModel directory holds a TensorFlow graph that can run "
                f"any operation (write files, ...), which no configuration check can vouch for. "
                f"{TRUST_HINT} Or re-save the model as .keras where you trust it.")
        return "savedmodel", path
    kind, copy = private_copy(path, workdir)
    if trust_model:
        return kind, copy
    if kind == "keras":
        with _open_zip(copy, path) as zf:
            bound = check_config(_keras_config(zf, path), path)
            _check_keras_weights(zf, path, bound, workdir)
    else:
        with _open_h5(copy, path) as f:
            bound = check_config(_h5_config(f, path), path)
            check_h5_objects(f, path, bound)
    return kind, copy


@contextlib.contextmanager
def prepared_model_file(path, trust_model=False, isolate=None):
    """`with prepared_model_file(path) as (kind, private_path):` load `private_path` with Keras.

    Runs `prepare` in a child process (keras_ebnn.frontend.isolation: 8 GiB address space, time limit, no core
    files), so a crash or endless loop of the HDF5 library on a damaged file becomes a ModelFileError
    with one line; in a process that is already such a child (the CLI's) it runs here. The private
    folder is removed on exit, also on failure. isolate=False runs `prepare` here (no child).
    """
    from . import isolation
    work = tempfile.mkdtemp(prefix="keras-ebnn-")
    try:
        if isolate is None:
            isolate = not isolation.in_child()
        if isolate:
            yield _prepare_in_child(path, work, trust_model)
        else:  # (in a child, under a time limit; otherwise as the caller runs it)
            with isolation.reading_timer() if isolation.in_child() else contextlib.nullcontext():
                result = prepare(path, work, trust_model)
            yield result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prepare_in_child(path, work, trust_model):
    import io

    from . import isolation
    out, err = io.StringIO(), io.StringIO()
    cmd = [sys.executable, "-m", "keras_ebnn.frontend.safe_load", os.fspath(path), work]
    if trust_model:
        cmd.append("--trust-model")
    seconds = isolation.load_seconds()
    code = isolation.run_child(cmd, isolation.child_env(work), out, err, timeout=seconds + 60)
    if code == 0:
        try:
            answer = json.loads(out.getvalue().strip().splitlines()[-1])
        except (ValueError, IndexError):
            answer = {}
        if answer.get("ok"):
            return answer["kind"], Path(answer["path"])
        if answer.get("error"):
            cls = UnsafeModelError if answer["error"] == "UnsafeModelError" else ModelFileError
            raise cls(answer["message"], **({"layer_label": answer.get("layer_label")}
                                             if cls is UnsafeModelError else {}))
    reason = isolation.death_reason(code, "check", seconds) or (
        f"the checking process failed (exit {code}): {short_error(err.getvalue() or out.getvalue())}")
    raise ModelFileError(f"could not read model file {_name(path)}: {reason}")


def _child_main(argv):
    """python -m keras_ebnn.frontend.safe_load PATH WORKDIR [--trust-model]: `prepare` under limits; prints one
    JSON line (the result or the error)."""
    from . import isolation
    isolation.limit_self(cpu_seconds=isolation.load_seconds() + 5)
    path, work = argv[0], argv[1]
    try:
        with isolation.reading_timer():
            kind, copy = prepare(path, work, trust_model="--trust-model" in argv[2:])
        print(json.dumps({"ok": True, "kind": kind, "path": str(copy)}))
    except ModelFileError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc),
                          "layer_label": getattr(exc, "layer_label", None)}))
    except (MemoryError, RecursionError) as exc:
        print(json.dumps({"error": "ModelFileError", "message": f"could not read model file "
                          f"{_name(path)}: {'out of memory' if isinstance(exc, MemoryError) else 'nested too deeply'}"
                          " while checking it"}))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
