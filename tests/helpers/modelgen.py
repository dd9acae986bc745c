"""Random Larq models covering the supported layer options, with realistic batch-norm statistics.

`random_model(seed)` returns (model, inputs, description). Batch-norm moving statistics are set from
the model's own activations on the inputs (then perturbed, with some negative and zero gammas), so
that output bits are balanced and thresholds fall inside the reachable range.
"""
import numpy as np

from keras_ebnn import import_larq

QUANTIZERS = ["ste_sign", "approx_sign", "swish_sign"]


def _bn(rng, layers_mod):
    return layers_mod.BatchNormalization(
        center=bool(rng.random() < 0.8), scale=bool(rng.random() < 0.8),
        epsilon=float(rng.choice([1e-3, 1e-5, 0.1])), momentum=0.9)


def _conv_out(size, k, s, padding):
    return -(-size // s) if padding == "same" else (size - k) // s + 1


def random_model(seed, n_inputs=64):
    tf, lq = import_larq()
    L = tf.keras.layers
    rng = np.random.default_rng(seed)
    tf.keras.utils.set_random_seed(seed)  # deterministic weights too
    h, w = int(rng.integers(5, 17)), int(rng.integers(5, 17))
    c = int(rng.choice([1, 3]))
    input_kind = rng.choice(["uint8", "uint8", "uint8_sym", "float"])
    first_sign = bool(rng.random() < 0.15)
    n_conv = int(rng.integers(0, 5)) if seed % 7 else 0
    n_dense = int(rng.integers(0, 4))
    if n_conv == 0:
        n_dense = max(n_dense, 1)
    desc = [f"in {h}x{w}x{c} {input_kind}{' sign' if first_sign else ''}"]
    layers = [L.InputLayer((h, w, c))]
    if input_kind == "uint8":
        layers.append(L.Rescaling(1 / 255.0))
    elif input_kind == "uint8_sym":
        layers.append(L.Rescaling(1 / 127.5, offset=-1.0))
    first = True
    shape = [h, w]

    def quant(first_layer):
        if first_layer and not first_sign:
            return None
        return str(rng.choice(QUANTIZERS))

    for _ in range(n_conv):
        k = int(rng.choice([1, 2, 3, 3, 5, 7]))
        s = int(rng.choice([1, 1, 2]))
        padding = str(rng.choice(["valid", "same"]))
        if _conv_out(min(shape), k, s, padding) < 1:
            padding = "same"
        pad_values = float(rng.choice([0.0, 1.0])) if padding == "same" else 0.0
        if first and input_kind == "uint8_sym" and pad_values == 1.0 and not first_sign:
            pad_values = 0.0  # 1.0 is not a whole number of input steps there (an error case)
        filters = int(rng.choice([1, 3, 5, 8, 17, 33]))
        layers.append(lq.layers.QuantConv2D(
            filters, k, strides=s, padding=padding, pad_values=pad_values,
            use_bias=bool(rng.random() < 0.4), input_quantizer=quant(first),
            kernel_quantizer=str(rng.choice(QUANTIZERS)), kernel_constraint="weight_clip"))
        desc.append(f"conv{k}x{k}/{s} {padding} pad{int(pad_values)} {filters}")
        first_block, first = first, False
        shape = [_conv_out(d, k, s, padding) for d in shape]
        order = str(rng.choice(["pool_bn", "bn_pool", "bn", "pool", "none", "bn_pool_bn"]))
        if first_block and not first_sign and input_kind != "sign" and "bn" not in order:
            # Keras computes a float first layer in float32: without a batch norm its threshold sits
            # exactly on the integer grid (the sign of an exact 0), where rounding decides the bit.
            # That case has its own test (test_first_layer_ties); keep it out of the 1e-4 budget.
            order += "_bn"
        pk = int(rng.choice([2, 3]))
        ps = int(rng.choice([1, 2, pk]))
        ppad = str(rng.choice(["valid", "same"]))
        if _conv_out(min(shape), pk, ps, ppad) < 1:
            ppad = "same"
        pool_shape = [_conv_out(d, pk, ps, ppad) for d in shape]
        for part in order.split("_"):
            if part == "bn":
                layers.append(_bn(rng, L))
            elif part == "pool":
                layers.append(L.MaxPooling2D((pk, pk), strides=ps, padding=ppad))
                shape = pool_shape
                desc.append(f"pool{pk}/{ps} {ppad}")
        desc[-1] += f" [{order}]"
        if rng.random() < 0.2:
            layers.append(L.Dropout(0.1))
    layers.append(L.Flatten())
    for _ in range(n_dense):
        units = int(rng.choice([3, 8, 20, 33]))
        layers.append(lq.layers.QuantDense(units, use_bias=bool(rng.random() < 0.4),
                                           input_quantizer=quant(first),
                                           kernel_quantizer=str(rng.choice(QUANTIZERS)),
                                           kernel_constraint="weight_clip"))
        # a float (Rescaling) first layer without batch norm puts its threshold on the integer grid
        # (ties decided by float rounding; see test_first_layer_ties): always normalize it
        needs_bn = first and not first_sign
        first = False
        if needs_bn or rng.random() < 0.85:
            layers.append(_bn(rng, L))
        if rng.random() < 0.2:
            layers.append(L.GaussianNoise(0.1))
        desc.append(f"dense {units}")
    classes = int(rng.choice([2, 5, 10]))
    final_softmax = str(rng.choice(["layer", "activation", "none"]))
    layers.append(lq.layers.QuantDense(classes, use_bias=bool(rng.random() < 0.5),
                                       input_quantizer=str(rng.choice(QUANTIZERS)),
                                       kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                                       activation="softmax" if final_softmax == "activation" else None))
    if rng.random() < 0.7 and final_softmax != "activation":
        layers.append(_bn(rng, L))
    if final_softmax == "layer":
        layers.append(L.Activation("softmax"))
    desc.append(f"out {classes} softmax={final_softmax}")
    model = tf.keras.Sequential(layers)
    if input_kind == "float":
        x = rng.normal(0, 1, (n_inputs, h, w, c)).astype(np.float32)
    else:
        x = rng.integers(0, 256, (n_inputs, h, w, c)).astype(np.uint8)
    calibrate_batchnorm(model, x, rng)
    return model, x, "; ".join(desc)


def stable(values, digits=3):
    """`values` rounded to `digits` significant digits. TensorFlow's float32 sums (the activations the
    statistics come from) differ in their last bits between CPUs and thread counts; statistics rounded
    this way give the same model, and the same generated C (tests/test_golden.py), on every machine."""
    flat = [float(f"{v:.{digits}g}") for v in np.ravel(np.asarray(values, dtype=np.float64))]
    return np.array(flat, dtype=np.float64).reshape(np.shape(values))


def calibrate_batchnorm(model, x, rng):
    """Set each BN layer's moving statistics near those of its input on `x`, layer by layer."""
    tf, _ = import_larq()
    xf = tf.constant(np.asarray(x, dtype=np.float32))
    for lay in model.layers:
        if not isinstance(lay, tf.keras.layers.BatchNormalization):
            continue
        probe = tf.keras.Model(model.inputs, lay.input)
        act = np.asarray(probe(xf, training=False), dtype=np.float64)
        act = act.reshape(-1, act.shape[-1])
        n = act.shape[-1]
        mean, std = stable(act.mean(0)), stable(act.std(0)) + 0.5
        lay.moving_mean.assign(mean + rng.normal(0, 0.3, n) * std)
        lay.moving_variance.assign((std * rng.uniform(0.5, 2.0, n)) ** 2)
        if lay.gamma is not None:
            gamma = rng.normal(0.5, 1.0, n)
            gamma[rng.random(n) < 0.05] = 0.0
            lay.gamma.assign(gamma)
        if lay.beta is not None:
            lay.beta.assign(rng.normal(0, 0.3, n))
