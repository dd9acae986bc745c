"""An upper bound of what Keras allocates when it builds a model from its configuration (issues 19, 22).

Keras builds every layer from the configuration (allocating its kernel) before it reads the stored
weights, so a corrupted or hostile size (`units: 10**12`) would exhaust memory before any mismatch is
noticed. `model_bound(config)` follows the shapes Keras builds -- padding, strides, pooling, Flatten,
Reshape, wrappers (TimeDistributed, Bidirectional), recurrent layers, nested models, functional
graphs through their inbound nodes, and a layer's own `build_config` / `batch_input_shape` /
`input_shape` (Keras builds from those too) -- and returns (weights, largest activation), both upper
bounds. It never under-counts what it does not understand: a layer it cannot place reads the largest
shape seen so far.

It cannot be dodged with the file's own numbers: every size must be a plain JSON integer (not a
float, string or bool), is capped before any arithmetic (`MAX_DIM`), products saturate at `CAP`, the
model may hold at most `MAX_LAYERS` layers (nested and wrapped ones included) and `MAX_EDGES` links
between them, and no recursion follows the length of the graph (only model nesting, itself bounded).
Problems raise `SizeError` (a ValueError): the caller turns it into a one-line ModelFileError.
"""

MAX_DIM = 2 ** 31 - 1  # one size (units, filters, a dimension); Keras's own int32 shapes
CAP = 1 << 62  # products saturate here: no big-integer arithmetic on hostile sizes
MAX_RANK = 8  # dimensions of one shape
MAX_LAYERS = 1000  # layers in the whole model (microcontroller models have tens to a few hundred)
MAX_EDGES = 4000  # inbound links between layers
MAX_NESTING = 16  # models inside models / wrapped layers
_SIZE_KEYS = ("units", "filters", "depth_multiplier", "input_dim", "output_dim", "n", "num_tokens",
              "num_heads", "key_dim", "value_dim", "height", "width")
_GATES = {"LSTM": 4, "LSTMCell": 4, "ConvLSTM1D": 4, "ConvLSTM2D": 4, "ConvLSTM3D": 4,
          "GRU": 3, "GRUCell": 3}


class SizeError(ValueError):
    """The configuration's sizes are malformed or beyond the bounds (message: one line)."""


def _mul(*values):
    result = 1
    for v in values:
        result = min(result * v, CAP)
    return result


def _add(*values):
    return min(sum(values), CAP)


def _int(value, what, low=0):
    """A plain JSON integer in [low, MAX_DIM] (None stays None)."""
    if value is None:
        return None
    if type(value) is not int:  # bool, float, str, list...: Keras would coerce them; we refuse
        raise SizeError(f"{what} is {type(value).__name__} {str(value)[:40]!r}, not a plain integer")
    if value > MAX_DIM or value < low:
        raise SizeError(f"{what} is out of range (must be between {low} and {MAX_DIM:,})")
    return value


def _ints(value, what, low=0):
    """An int or a list of ints (None entries become 1) as a list of ints >= 1."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if len(items) > MAX_RANK:
        raise SizeError(f"{what} has {len(items)} entries, more than {MAX_RANK}")
    return [max(_int(v, what, low) or 1, 1) for v in items]


def _shape(value, what, batch):
    """A shape list ([None, 28, 28, 1] with batch=True) as dims >= 1 without the batch dim."""
    if not isinstance(value, (list, tuple)):
        raise SizeError(f"{what} is not a list")
    dims = list(value[1:] if batch else value)
    if isinstance(value, (list, tuple)) and dims and all(isinstance(d, (list, tuple)) for d in value):
        raise SizeError(f"{what} is a list of shapes")
    return _ints(dims, what) if dims else [1]


def _channels_first(cfg):
    return cfg.get("data_format") == "channels_first"


def _split(shape, cfg):
    if _channels_first(cfg) and len(shape) >= 2:
        return shape[0], shape[1:]
    return shape[-1], shape[:-1]


def _join(channels, spatial, cfg):
    return [channels] + spatial if _channels_first(cfg) else spatial + [channels]


def _widest(shapes):
    """Elementwise maximum of shapes (aligned on their last dimension): an upper bound of each."""
    shapes = [s for s in shapes if s]
    if not shapes:
        return [1]
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s):
            j = rank - len(s) + i
            out[j] = max(out[j], d)
    return out


def _window(dims, kernel, strides, padding, dilation=None):
    """Output spatial dims of a convolution / pooling window (upper bound for unknown paddings)."""
    out = []
    for i, d in enumerate(dims):
        k = kernel[min(i, len(kernel) - 1)]
        s = strides[min(i, len(strides) - 1)]
        r = dilation[min(i, len(dilation) - 1)] if dilation else 1
        if padding == "valid":
            out.append(max(1, (d - _mul(k - 1, r) - 1) // s + 1))
        else:  # same, causal, or anything else: ceil(d / s) bounds them all
            out.append(max(1, -(-d // s)))
    return out


class _Counter:
    def __init__(self):
        self.layers = 0
        self.edges = 0
        self.largest = 1  # elements of the largest activation seen

    def layer(self):
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise SizeError(f"the model has more than {MAX_LAYERS:,} layers")

    def edge(self, n=1):
        self.edges += n
        if self.edges > MAX_EDGES:
            raise SizeError(f"the model's layers have more than {MAX_EDGES:,} links between them")

    def seen(self, shape):
        self.largest = max(self.largest, _mul(*shape))
        return shape


def model_bound(config):
    """(weights, largest activation elements): upper bounds for a model configuration (parsed JSON).

    Raises SizeError for sizes that are not plain integers, out of range, or a model beyond the
    layer / link bounds."""
    counter = _Counter()
    weights, _ = _model(config.get("config"), [], counter, 0)
    return weights, counter.largest


def estimated_weights(config):
    """The weights part of `model_bound` (kept for callers of the first version)."""
    return model_bound(config)[0]


def _layer_list(cfg):
    layers = cfg.get("layers") if isinstance(cfg, dict) else None
    return layers if isinstance(layers, list) else []


def _inbound_names(value, counter, found, depth=0):
    """Layer names referenced by an `inbound_nodes` value (Keras 2 lists or Keras 3 keras_history)."""
    if depth > 8:
        return found
    if isinstance(value, dict):
        history = value.get("keras_history")
        if isinstance(history, list) and history and isinstance(history[0], str):
            counter.edge()
            found.append(history[0])
            return found
        for v in value.values():
            _inbound_names(v, counter, found, depth + 1)
    elif isinstance(value, list):
        if len(value) >= 3 and isinstance(value[0], str) and type(value[1]) is int:
            counter.edge()
            found.append(value[0])
            return found
        for v in value:
            _inbound_names(v, counter, found, depth + 1)
    return found


def _model(cfg, inputs, counter, nesting):
    """(weights, output shape) of a Sequential / functional model config applied to `inputs`."""
    if nesting > MAX_NESTING:
        raise SizeError(f"models are nested more than {MAX_NESTING} levels deep")
    layers = _layer_list(cfg)
    shapes = {}  # layer name -> output shape
    largest = _widest(inputs) if inputs else [1]
    previous = largest
    total = 0
    functional = any(isinstance(lay, dict) and "inbound_nodes" in lay for lay in layers)
    for lay in layers:
        if not isinstance(lay, dict):
            continue
        counter.layer()
        if functional:
            names = _inbound_names(lay.get("inbound_nodes"), counter, [])
            ins = [shapes.get(n, largest) for n in names] or [previous]
        else:
            ins = [previous]
        weights, out = _layer(lay, ins, counter, nesting)
        total = _add(total, weights)
        out = counter.seen(out or [1])
        name = lay.get("name")
        if not isinstance(name, str) and isinstance(lay.get("config"), dict):
            name = lay["config"].get("name")
        if isinstance(name, str):
            shapes[name] = out
        previous = out
        if _mul(*out) > _mul(*largest):
            largest = out
    if functional and isinstance(cfg, dict) and cfg.get("output_layers") is not None:
        names = _inbound_names(cfg["output_layers"], counter, [])
        if names:  # the model's outputs (unknown names: the largest shape)
            return total, _widest([shapes.get(n, largest) for n in names])
    return total, previous


def _declared_inputs(cfg, ins):
    """The input shapes Keras builds the layer for: its inputs, widened by shapes the config declares."""
    declared = []
    for key, batch in (("batch_input_shape", True), ("batch_shape", True), ("input_shape", False)):
        if cfg.get(key) is not None:
            declared.append(_shape(cfg[key], key, batch))
    if declared:
        ins = [_widest(ins + declared)]
    return ins


def _layer(lay, ins, counter, nesting):
    """(weights, output shape) of one layer config given its input shapes."""
    cls = lay.get("class_name")
    cfg = lay.get("config")
    if not isinstance(cfg, dict):
        return 0, _widest(ins)
    cls = cls if isinstance(cls, str) else ""
    build = lay.get("build_config")
    if isinstance(build, dict) and isinstance(build.get("input_shape"), list):
        shape = build["input_shape"]
        if shape and all(isinstance(s, list) for s in shape):
            ins = ins + [_shape(s, "build_config input_shape", True) for s in shape[:64]]
        elif shape:
            ins = ins + [_shape(shape, "build_config input_shape", True)]
    ins = _declared_inputs(cfg, ins)
    for key in _SIZE_KEYS:  # plain integers only, whatever the layer
        if key in cfg and not isinstance(cfg[key], (list, dict)):
            _int(cfg[key], key)
    if cls == "InputLayer":
        declared = _declared_inputs(cfg, [])
        return 0, _widest(declared or ins)
    if _layer_list(cfg):  # a nested model
        return _model(cfg, ins, counter, nesting + 1)
    if cls in ("Concatenate",):
        return 0, _concat(ins, cfg)
    shape = _widest(ins)
    if isinstance(cfg.get("layer"), dict):  # TimeDistributed, Bidirectional, SpectralNormalization...
        return _wrapper(cls, cfg, shape, counter, nesting)
    if cls in _GATES or cls in ("SimpleRNN", "SimpleRNNCell", "RNN", "StackedRNNCells") or "cell" in cfg:
        return _recurrent(cls, cfg, shape, counter, nesting)
    return _plain(cls, cfg, shape)


def _concat(ins, cfg):
    """Concatenate: the widest input, its concatenation axis the sum of the inputs' sizes on it."""
    widest = _widest(ins)
    rank = len(widest)
    axis = cfg.get("axis", -1)
    axis = axis if type(axis) is int else -1
    k = axis if axis < 0 else axis - 1 - rank  # the config's axis counts the batch dimension
    if ins and -rank <= k < 0:
        widest[k] = min(sum(s[k] if len(s) >= -k else 1 for s in ins), CAP)
    return widest


def _wrapper(cls, cfg, shape, counter, nesting):
    if nesting > MAX_NESTING:
        raise SizeError(f"layers are wrapped more than {MAX_NESTING} levels deep")
    inner = cfg["layer"]
    counter.layer()
    if cls == "TimeDistributed":
        weights, out = _layer(inner, [shape[1:] or [1]], counter, nesting + 1)
        return weights, [shape[0]] + out
    weights, out = _layer(inner, [shape], counter, nesting + 1)
    if cls == "Bidirectional":
        backward = cfg.get("backward_layer")
        if isinstance(backward, dict):
            counter.layer()
            back, out2 = _layer(backward, [shape], counter, nesting + 1)
        else:
            back, out2 = weights, out
        out = _widest([out, out2])
        return _add(weights, back), out[:-1] + [_mul(out[-1], 2)]
    return _mul(weights, 2), out  # SpectralNormalization and others: a copy of the kernel at most


def _recurrent(cls, cfg, shape, counter, nesting):
    """LSTM / GRU / SimpleRNN / ConvLSTM, their cells, RNN(cell), StackedRNNCells."""
    cells = cfg.get("cells")
    if isinstance(cells, list):  # StackedRNNCells
        total, out = 0, shape
        for cell in cells[:MAX_LAYERS]:
            if isinstance(cell, dict):
                counter.layer()
                w, out = _layer(cell, [out], counter, nesting + 1)
                total = _add(total, w)
        return total, out
    cell = cfg.get("cell")
    if isinstance(cell, dict):  # RNN(cell=...)
        counter.layer()
        return _layer(cell, [shape], counter, nesting + 1)
    gates = _GATES.get(cls, 1)
    channels = shape[-1]
    if "filters" in cfg:  # ConvLSTM: input [time, spatial..., channels]
        filters = _ints(cfg["filters"], "filters")[0]
        kernel = _ints(cfg.get("kernel_size", 1), "kernel_size")
        channels, spatial = _split(shape[1:] or [1], cfg)
        weights = _mul(gates, _mul(*kernel), _add(channels, filters), filters)
        spatial = _window(spatial, kernel, _ints(cfg.get("strides", 1), "strides"), cfg.get("padding"))
        return _add(weights, _mul(2, gates, filters)), shape[:1] + _join(filters, spatial, cfg)
    units = _ints(cfg.get("units", 1), "units")[0]
    weights = _add(_mul(gates, units, _add(channels, units)), _mul(2, gates, units))
    return weights, shape[:-1] + [units]


def _plain(cls, cfg, shape):
    """Every other layer: conv / dense / embedding / pooling / reshaping / merging / per-channel."""
    channels, spatial = _split(shape, cfg)
    per_channel = _mul(4, channels)  # batch-norm-like vectors, PReLU's shared alpha... (4 per channel)
    if "filters" in cfg and "kernel_size" in cfg:
        filters = _ints(cfg["filters"], "filters")[0]
        kernel = _ints(cfg["kernel_size"], "kernel_size")
        strides = _ints(cfg.get("strides", 1), "strides")
        dilation = _ints(cfg.get("dilation_rate", 1), "dilation_rate")
        if "Transpose" in cls:
            out = [_add(_mul(d, strides[min(i, len(strides) - 1)]), kernel[min(i, len(kernel) - 1)])
                   for i, d in enumerate(spatial)]
        else:
            out = _window(spatial, kernel, strides, cfg.get("padding"), dilation)
        if "depth_multiplier" in cfg:  # separable: depthwise then pointwise
            dm = _ints(cfg["depth_multiplier"], "depth_multiplier")[0]
            weights = _add(_mul(*kernel, channels, dm), _mul(channels, dm, filters))
        elif "LocallyConnected" in cls:
            weights = _mul(_mul(*out), _mul(*kernel), channels, filters)
        else:
            weights = _mul(*kernel, channels, filters)
        return _add(weights, _mul(_mul(*out) if "LocallyConnected" in cls else 1, filters), _mul(4, filters)), \
            _join(filters, out, cfg)
    if "depth_multiplier" in cfg:  # depthwise conv
        dm = _ints(cfg["depth_multiplier"], "depth_multiplier")[0]
        kernel = _ints(cfg.get("kernel_size", 1), "kernel_size")
        out = _window(spatial, kernel, _ints(cfg.get("strides", 1), "strides"), cfg.get("padding"),
                      _ints(cfg.get("dilation_rate", 1), "dilation_rate"))
        return _add(_mul(*kernel, channels, dm), _mul(5, channels, dm)), _join(_mul(channels, dm), out, cfg)
    if "input_dim" in cfg and "output_dim" in cfg:  # Embedding
        out_dim = _ints(cfg["output_dim"], "output_dim")[0]
        return _mul(_ints(cfg["input_dim"], "input_dim")[0], out_dim), shape + [out_dim]
    if "units" in cfg:  # Dense, QuantDense
        units = _ints(cfg["units"], "units")[0]
        return _add(_mul(channels, units), _mul(5, units)), shape[:-1] + [units]
    if "num_heads" in cfg:  # MultiHeadAttention: query, key, value and output projections
        heads = _ints(cfg["num_heads"], "num_heads")[0]
        key = _ints(cfg.get("key_dim", 1), "key_dim")[0]
        value = _ints(cfg.get("value_dim") or key, "value_dim")[0]
        return _mul(4, heads, max(key, value), _add(shape[-1], 1)), shape
    if "output_shape" in cfg and "equation" in cfg:  # EinsumDense
        out = _ints(cfg["output_shape"], "output_shape")
        return _add(_mul(_mul(*shape), _mul(*out)), _mul(*out)), out
    if cls == "Flatten":
        return 0, [_mul(*shape)]
    if "target_shape" in cfg:  # Reshape (-1: the rest of the elements)
        dims = cfg["target_shape"]
        if not isinstance(dims, (list, tuple)):
            raise SizeError("target_shape is not a list")
        return 0, [_mul(*shape) if d == -1 else d for d in _ints_or_minus_one(dims)]
    if cls == "Permute" and isinstance(cfg.get("dims"), (list, tuple)):
        dims = _ints(cfg["dims"], "dims")
        return 0, [shape[d - 1] if 0 < d <= len(shape) else 1 for d in dims]
    if cls == "RepeatVector":
        return 0, [_ints(cfg.get("n", 1), "n")[0]] + shape
    if "pool_size" in cfg or "Pool" in cls:
        if "Global" in cls:
            return 0, [channels]
        pool = _ints(cfg.get("pool_size", 2), "pool_size")
        strides = _ints(cfg.get("strides") if cfg.get("strides") is not None else pool, "strides")
        return 0, _join(channels, _window(spatial, pool, strides, cfg.get("padding")), cfg)
    if "size" in cfg and cls.startswith("UpSampling"):
        sizes = _ints(cfg["size"], "size")
        return 0, _join(channels, [_mul(d, sizes[min(i, len(sizes) - 1)]) for i, d in enumerate(spatial)], cfg)
    if cls.startswith("ZeroPadding"):
        pad = _add(*_ints(_flatten(cfg.get("padding", 1)), "padding"))
        return 0, _join(channels, [_add(d, pad) for d in spatial], cfg)
    if "height" in cfg and "width" in cfg:  # Resizing, crops: at most the requested size
        h, w = _ints(cfg["height"], "height")[0], _ints(cfg["width"], "width")[0]
        dims = [max(a, b) for a, b in zip(spatial, [h, w])] if len(spatial) == 2 else [h, w]
        return 0, _join(channels, dims, cfg)
    if "num_tokens" in cfg:  # CategoryEncoding
        return 0, shape[:-1] + [_ints(cfg["num_tokens"], "num_tokens")[0]]
    if cls == "PReLU" or (isinstance(cfg.get("axis"), list) and len(cfg["axis"]) > 1):  # per element
        return _add(_mul(2, _mul(*shape)), per_channel), shape
    return per_channel, shape


def _ints_or_minus_one(dims):
    if len(dims) > MAX_RANK:
        raise SizeError(f"target_shape has {len(dims)} entries, more than {MAX_RANK}")
    return [-1 if d == -1 else max(_int(d, "target_shape"), 1) for d in dims]


def _flatten(value, depth=0):
    if isinstance(value, (list, tuple)) and depth < 4:
        return [x for v in value for x in _flatten(v, depth + 1)]
    return [value]
