"""Random LoweredModels built directly from blocks (no Keras): every input mode, kernels 1..7,
strides 1-2, TF same/valid padding with pad value 0/1, max/min pooling with windows hanging off the
edges, odd channel counts, 1-4 conv blocks, 0-3 hidden dense blocks, non-square inputs, thresholds
near the middle of the reachable range (balanced bits) plus some constant channels."""
import numpy as np

from keras_ebnn.ir.blocks import (BinaryConvBlock, BinaryDenseBlock, ConvGeometry, InputConvBlock, InputSpec,
                               LoweredModel, OutputDenseBlock, threshold_limit)

CHANNELS = [1, 2, 3, 5, 8, 17, 32, 33, 40]


def _pad(size, k, s, same):
    """TF padding: (out, leading pad)."""
    if same:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, total // 2
    return (size - k) // s + 1, 0


def _geometry(rng, in_shape, allow_pool=True):
    h, w, c = in_shape
    for _ in range(50):
        kh, kw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        if rng.random() < 0.5:
            kw = kh
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        same = bool(rng.random() < 0.6)
        ch, top = _pad(h, kh, sh, same)
        cw, left = _pad(w, kw, sw, same)
        if ch >= 1 and cw >= 1:
            break
    else:
        kh = kw = sh = sw = 1
        same, ch, cw, top, left = False, h, w, 0, 0
    geom = dict(in_shape=in_shape, kernel=(kh, kw), strides=(sh, sw), pad=(top, left), conv_shape=(ch, cw),
                pad_value=int(same and rng.random() < 0.5))
    if allow_pool and rng.random() < 0.6:
        ph, pw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        psh, psw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        psame = bool(rng.random() < 0.5)
        oh, pt = _pad(ch, ph, psh, psame)
        ow, pl = _pad(cw, pw, psw, psame)
        if oh >= 1 and ow >= 1:
            geom.update(pool=(ph, pw), pool_strides=(psh, psw), pool_pad=(pt, pl), out_hw=(oh, ow))
            return ConvGeometry(**geom)
    geom.update(out_hw=(ch, cw))
    return ConvGeometry(**geom)


def _thresholds(rng, block, o, values=None):
    """Middle of the range (estimated from the fan-in), with ~10% constant channels."""
    lim = threshold_limit(block)
    if lim is None:  # float accumulator
        thr = rng.normal(0, 0.5 * np.sqrt(values), o).astype(np.float32)
        const = rng.random(o) < 0.1
        thr[const] = np.where(rng.random(const.sum()) < 0.5, np.float32(-np.inf), np.float32(np.inf))
        return thr
    spread = max(1, int(np.sqrt(lim)))
    thr = rng.integers(-spread, spread + 1, o).astype(np.int64)
    const = rng.random(o) < 0.1
    thr[const] = np.where(rng.random(const.sum()) < 0.5, -lim, lim)
    return thr


def random_lowered(seed):
    """(LoweredModel, inputs) for one seed."""
    rng = np.random.default_rng(seed)
    mode = ["float", "uint8", "sign_float", "sign_uint8"][seed % 4]
    h, w = int(rng.integers(3, 15)), int(rng.integers(3, 15))
    c = int(rng.choice([1, 2, 3, 5]))
    spec = InputSpec(shape=(h, w, c), mode=mode)
    if mode == "uint8":
        spec.q_mul, spec.q_add = [(1, 0), (2, -255), (1, -128)][int(rng.integers(0, 3))]
        spec.q_scale = 1 / 255 if spec.q_add == 0 else 1 / 127.5
        spec.pad_q = int(rng.choice([255, 127, 1]))
    elif mode == "sign_uint8":
        spec.sign_threshold = int(rng.integers(0, 257))
    elif mode == "sign_float":
        spec.sign_threshold = float(rng.normal(0, 0.3))
    blocks, shape = [], spec.shape
    n_conv = int(rng.integers(1, 5))
    n_dense = int(rng.integers(0, 4))
    for i in range(n_conv):
        geom = _geometry(rng, shape)
        o = int(rng.choice(CHANNELS))
        kh, kw = geom.kernel
        weights = rng.random((o, kh, kw, shape[2])) < rng.uniform(0.3, 0.7)
        pool_min = rng.random(o) < 0.3
        if i == 0:
            block = InputConvBlock(geom, spec, weights, np.zeros(o), pool_min)
            fan = kh * kw * shape[2]
            block.threshold = _thresholds(rng, block, o, fan)
            if mode == "uint8":  # integer values: centre on the mean input value
                mid = (spec.q_mul * 127 + spec.q_add) * (2 * weights.reshape(o, -1).sum(1) - fan)
                block.threshold[np.abs(block.threshold) < threshold_limit(block)] += mid[
                    np.abs(block.threshold) < threshold_limit(block)].astype(np.int64)
        else:
            block = BinaryConvBlock(geom, weights, np.zeros(o), pool_min)
            block.threshold = _thresholds(rng, block, o)
        blocks.append(block)
        shape = block.out_shape
        if shape[0] * shape[1] * shape[2] > 6000:
            break
    for _ in range(n_dense):
        n = int(np.prod(shape))
        o = int(rng.choice([1, 7, 32, 33, 64, 100]))
        block = BinaryDenseBlock(rng.random((o, n)) < 0.5, np.zeros(o))
        block.threshold = _thresholds(rng, block, o)
        blocks.append(block)
        shape = block.out_shape
    k = int(rng.choice([1, 2, 3, 10]))
    n = int(np.prod(shape))
    blocks.append(OutputDenseBlock(rng.random((k, n)) < 0.5, rng.normal(0, 1, k).astype(np.float32),
                                   rng.normal(0, 3, k).astype(np.float32)))
    model = LoweredModel(f"rand{seed}", spec, blocks)
    n_in = 64
    if mode in ("uint8", "sign_uint8"):
        x = rng.integers(0, 256, (n_in, h, w, c)).astype(np.uint8)
    else:
        x = rng.normal(0, 1, (n_in, h, w, c)).astype(np.float32)
        x[:, 0, 0, 0] = 0.0
    return model, x
