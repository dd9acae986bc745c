"""Check a model file before Keras reads it, so that converting an untrusted file never runs its code.

Keras model files can carry code: a `Lambda` layer stores Python bytecode that `.h5` loading runs,
a config entry's `module` field makes the `.keras` loader import that module, and a custom class
runs whatever its `from_config` does. keras-ebnn therefore reads the model's configuration with
plain zipfile / json / h5py (no TensorFlow, nothing deserialized) and accepts it only if every
object in it is a Keras built-in or larq class from an explicit allow-list:

* `.keras` (zip): `config.json` (every member's CRC is checked first).
* `.h5` / HDF5: the `model_config` attribute (every group and dataset header is read first).
* SavedModel directory: refused unless trusted, because its TensorFlow graph can hold arbitrary
  ops (file writes, ...) that no configuration check can vouch for.

`Lambda`, `TFOpLambda`/`SlicingOpLambda` (call TensorFlow functions by name; a TFOpLambda of one of the
plain-arithmetic functions in TF_OP_FUNCTIONS, e.g. `x + y`, is admitted), serialized lambdas and
any class, function or module outside the allow-list raise `UnsafeModelError` naming the layer (name
and class). `trust_model=True` (CLI: `--trust-model`) skips the check; use it only for files whose
origin you trust as you would trust a Python script. Unreadable or malformed files raise
`ModelFileError` ("could not read model file X: ...").

The allow-list admits classes that are safe to *load*; whether keras-ebnn can *export* them is
decided later by the lowering (e.g. `Conv2D` loads fine and is then reported as unsupported).
"""
import json
import zipfile
from pathlib import Path

from .errors import ModelFileError, UnsafeModelError

MAX_ARCHIVE_BYTES = 2 * 1024 ** 3  # a .keras archive whose members unpack to more is refused
MAX_CONFIG_BYTES = 64 * 1024 * 1024  # a model configuration is a few KB; refuse absurd sizes
MAX_DEPTH = 64  # nesting of configuration objects (models in models, wrappers, ...)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_WEIGHTS = 1 << 27  # refuse configurations whose weights alone would need more than 512 MB

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
ALLOWED_MODULE_ROOTS = ("keras", "tf_keras", "larq")
CODE_CLASSES = {
    "Lambda": "a Lambda layer stores Python code that loading would run",
    "TFOpLambda": "a TFOpLambda layer calls a TensorFlow function chosen by name in the file",
    "SlicingOpLambda": "a SlicingOpLambda layer calls a TensorFlow function chosen by name in the file",
    "__lambda__": "a serialized Python lambda would be run",
}
# TFOpLambda layers (Python operators / tf.* calls in a functional model) whose recorded TensorFlow
# function is one of these plain-arithmetic ones: loading such a layer calls only that function, and the
# graph lowering takes exactly these (keras_ebnn/graph.py TF_OPS). Any other TFOpLambda stays refused.
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
    or is not a model file (a SavedModel directory gives kind "savedmodel" and config None).
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "savedmodel", None
        raise ModelFileError(f"could not read model file {path}: a directory, but not a SavedModel "
                             "(no saved_model.pb in it)")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ModelFileError(f"could not read model file {path}: {exc.strerror or exc}") from exc
    # Keras picks the loader from the name: *.keras -> zip archive, else HDF5 if the file is HDF5.
    if path.suffix == ".keras" or (head[:2] == b"PK" and path.suffix not in (".h5", ".hdf5")):
        return "keras", _read_keras_config(path)
    if path.suffix in (".h5", ".hdf5") or head == HDF5_SIGNATURE:
        return "h5", _read_h5_config(path)
    raise ModelFileError(f"could not read model file {path}: not a .keras archive, an HDF5 (.h5) file "
                         "or a SavedModel directory")


def _read_keras_config(path):
    what = f"could not read model file {path}: not a valid .keras archive"
    try:
        with zipfile.ZipFile(path) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
            if unpacked > MAX_ARCHIVE_BYTES:  # a zip bomb would take minutes to check and to load
                raise ModelFileError(f"{what} (its members unpack to {unpacked:,} bytes, more than "
                                     f"{MAX_ARCHIVE_BYTES:,})")
            bad = zf.testzip()  # reads every member: CRC and decompression errors surface here
            if bad is not None:
                raise ModelFileError(f"{what} (member {bad!r} is corrupted: CRC mismatch)")
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise ModelFileError(f"{what} (no config.json in it)") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise ModelFileError(f"{what} (config.json is {info.file_size} bytes)")
            raw = zf.read(info)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError, OverflowError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{what} ({short_error(exc)})") from exc
    except Exception as exc:  # zlib.error, struct.error...: any failure here means a broken archive
        raise ModelFileError(f"{what} ({type(exc).__name__}: {short_error(exc)})") from exc
    return _parse_json(raw, f"could not read model file {path}: config.json")


def _read_h5_config(path):
    what = f"could not read model file {path}: not a valid .h5 model file"
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py comes with TensorFlow
        raise ModelFileError(f"could not read model file {path}: h5py is not installed") from exc
    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelFileError(f"{what} (no model_config attribute: a weights-only file?)")
            raw = f.attrs["model_config"]
            f.visititems(lambda name, obj: None)  # read every group's index: a damaged one fails here
    except ModelFileError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError...
        raise ModelFileError(f"{what} ({short_error(exc)})") from exc
    if hasattr(raw, "tobytes") and not isinstance(raw, (bytes, str)):
        raw = raw.tobytes()
    if not isinstance(raw, (bytes, str)):
        raise ModelFileError(f"{what} (model_config is not text)")
    return _parse_json(raw, f"could not read model file {path}: model_config")


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
        raise ModelFileError(f"could not read model file {path}: the configuration is not a Keras model "
                             "(no class_name / config)")
    top = {k: v for k, v in config.items() if k != "compile_config"}
    try:
        _walk(top, path, layer=None, depth=0)
        weights = estimated_weights(config)
    except (TypeError, AttributeError, ValueError, IndexError, KeyError, OverflowError) as exc:
        if isinstance(exc, ModelFileError):  # includes UnsafeModelError
            raise
        raise ModelFileError(f"could not read model file {path}: malformed configuration "
                             f"({short_error(exc)})") from exc
    if weights > MAX_WEIGHTS:
        raise ModelFileError(
            f"could not read model file {path}: its configuration describes about "
            f"{float(min(weights, 10 ** 300)):.3g} weights, "
            f"more than the {MAX_WEIGHTS:,} keras-ebnn accepts (a model for a microcontroller has far "
            "fewer; building it would exhaust memory; is the file corrupted?)")


_LAYER_KEYS = ("layers", "layer", "cell", "cells", "forward_layer", "backward_layer")


def _layer_label(node):
    """'layer NAME (CLASS)' for a layer's config object."""
    cfg = node.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    if not isinstance(name, str):
        name = node.get("name") if isinstance(node.get("name"), str) else "?"
    return f"layer {name[:80]!r} ({str(node.get('class_name'))[:80]})"


def _walk(node, path, layer, depth, key=None):
    """Check `node`; `layer` labels the enclosing layer, `key` is the key that holds `node`."""
    if depth > MAX_DEPTH:
        raise ModelFileError(f"could not read model file {path}: the configuration is nested more than "
                             f"{MAX_DEPTH} levels deep")
    if isinstance(node, list):
        for item in node:
            _walk(item, path, layer, depth + 1, key)
        return
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
        elif isinstance(value, (dict, list)):
            _walk(value, path, layer, depth + 1, k if k != "config" else key)


def _refuse(path, layer, what, why):
    where = f"{layer}: " if layer else ""
    raise UnsafeModelError(f"model file {path}: {where}{what}{why}. {TRUST_HINT}", layer_label=layer)


def _check_object(node, path, layer, key):
    """Check one object with a class_name. `key` is None when the object is the layer `layer` itself."""
    cls, module, registered = node.get("class_name"), node.get("module"), node.get("registered_name")
    if not isinstance(cls, str):
        raise ModelFileError(f"could not read model file {path}: malformed configuration (class_name "
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
    if cls in DATA_CLASSES or tf_op:
        return
    if cls not in ALLOWED_CLASSES:
        _refuse(path, layer, what, "is not a Keras built-in or larq class, so loading it could run "
                                   "its code")
    if registered is not None:
        parts = registered.split(">", 1) if isinstance(registered, str) else [None]
        if parts[-1] not in ALLOWED_CLASSES or (len(parts) == 2 and parts[0] not in ALLOWED_MODULE_ROOTS):
            _refuse(path, layer, what, f"is registered as {str(registered)[:80]!r}, not a Keras or "
                                       "larq built-in")


def _ints(value):
    """The integers in a shape-like config value (int or list of ints; None / other types count 1)."""
    items = value if isinstance(value, list) else [value]
    return [v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 1 for v in items]


def _product(values):
    result = 1
    for v in values:
        result *= v
    return result


def estimated_weights(config):
    """An upper estimate of the number of weights the configuration asks Keras to allocate.

    Keras builds every layer from the configuration (allocating and initialising its kernel) before
    it reads the stored weights, so a corrupted size (filters=10**12) would exhaust memory before any
    mismatch is noticed. The estimate follows the layers in file order, tracking an upper bound of
    the activation shape (strides and pooling only shrink it; UpSampling/ZeroPadding/Reshape/Flatten
    are followed); kernel weights = prod(kernel_size) x input channels x filters (or units), plus the
    embedding and depthwise cases. Nested models are followed the same way.
    """
    total = 0
    shape = [1]

    def visit(layers):
        nonlocal total, shape
        for lay in layers if isinstance(layers, list) else []:
            cfg = lay.get("config") if isinstance(lay, dict) else None
            if not isinstance(cfg, dict):
                continue
            if isinstance(cfg.get("layers"), list):  # a nested model
                visit(cfg["layers"])
                continue
            for key in ("batch_input_shape", "batch_shape"):
                if isinstance(cfg.get(key), list) and cfg[key]:
                    shape = _ints(cfg[key][1:]) or [1]
            channels = shape[-1]
            kernel = _product(_ints(cfg.get("kernel_size", 1)))
            if "filters" in cfg or "units" in cfg:
                out = _ints(cfg.get("filters", cfg.get("units")))[0]
                total += kernel * channels * out
                shape = shape[:-1] + [out]
            if "depth_multiplier" in cfg:
                out = channels * _ints(cfg["depth_multiplier"])[0]
                total += kernel * out
                if "filters" not in cfg:
                    shape = shape[:-1] + [out]
            if "input_dim" in cfg and "output_dim" in cfg:
                total += _ints(cfg["input_dim"])[0] * _ints(cfg["output_dim"])[0]
                shape = shape + [_ints(cfg["output_dim"])[0]]
            if "size" in cfg:  # UpSampling
                sizes = _ints(cfg["size"])
                shape = [d * sizes[min(i, len(sizes) - 1)] for i, d in enumerate(shape[:-1])] + shape[-1:]
            if "padding" in cfg and not isinstance(cfg["padding"], str):  # ZeroPadding
                pad = sum(_ints(_flatten(cfg["padding"])))
                shape = [d + pad for d in shape[:-1]] + shape[-1:]
            if "target_shape" in cfg:
                shape = _ints(cfg["target_shape"]) or [1]
            if lay.get("class_name") == "Flatten":
                shape = [_product(shape)]
            total += 4 * shape[-1]  # batch-norm-like per-channel vectors

    config_ = config.get("config")
    if isinstance(config_, dict):
        visit(config_.get("layers"))
    return total


def _flatten(value):
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def _check_name(value, key, path, layer):
    parts = value.split(">", 1)
    known = parts[-1] in ALLOWED_FUNCTIONS or parts[-1] in ALLOWED_CLASSES
    if not known or (len(parts) == 2 and parts[0] not in ALLOWED_MODULE_ROOTS):
        _refuse(path, layer, f"{key} {value[:80]!r} ", "is not a Keras or larq built-in")


def check_model_file(path, trust_model=False):
    """Check that loading `path` with Keras cannot run code from it; return its kind.

    Returns "keras", "h5" or "savedmodel". With trust_model=False: raises UnsafeModelError for a
    SavedModel directory or a configuration naming a layer/object outside the allow-list, and
    ModelFileError for a missing, unreadable or malformed file. With trust_model=True only the
    file's kind is determined (a missing file still raises ModelFileError).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"could not load model file {path}: it does not exist")
    if trust_model:
        if path.is_dir():
            return "savedmodel"
        return "keras" if path.suffix == ".keras" else "h5"
    kind, config = read_model_config(path)
    if kind == "savedmodel":
        raise UnsafeModelError(
            f"model file {path}: a SavedModel directory holds a TensorFlow graph that can run any "
            f"operation (write files, ...), which no configuration check can vouch for. {TRUST_HINT} "
            "Or re-save the model as .keras where you trust it.")
    check_config(config, path)
    return kind
