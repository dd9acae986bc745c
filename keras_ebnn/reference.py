"""NumPy reference executor: the executable definition of the block semantics in `keras_ebnn.blocks`.

Between blocks, activations are stored bit-packed (`np.packbits`, little bit order, one row of
ceil(H*W*C/8) bytes per sample), as the C runtime stores them. Inside a block the accumulators are
computed with a matrix product on +1/-1/0 values, which is exact for integers (float64 mantissa), or,
for a float input, by summing the taps one by one in float32 in the order the C kernel uses.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .blocks import LoweredModel, class_threshold, classes_of

BATCH = 1024


def pack_bits(bits):
    """bool (N, ...) -> uint8 (N, ceil(size/8)): sample-wise row-major bits, LSB first in each byte."""
    bits = np.asarray(bits, dtype=bool)
    return np.packbits(bits.reshape(bits.shape[0], -1), axis=1, bitorder="little")


def unpack_bits(packed, shape):
    """Inverse of `pack_bits`: uint8 (N, nbytes) -> bool (N, *shape)."""
    count = int(np.prod(shape))
    flat = np.unpackbits(packed, axis=1, count=count, bitorder="little")
    return flat.astype(bool).reshape((packed.shape[0],) + tuple(shape))


def _input_values(spec, x):
    """Model input -> (values, integer?) as the first block's accumulator sees them."""
    if spec.mode == "float":
        return np.asarray(x, dtype=np.float32), False
    if spec.mode == "uint8":
        return spec.q_mul * np.asarray(x, dtype=np.int64) + spec.q_add, True
    if spec.mode == "sign_float":
        return np.where(np.asarray(x, dtype=np.float32) >= np.float32(spec.sign_threshold), 1, -1), True
    if spec.mode == "sign_uint8":
        return np.where(np.asarray(x, dtype=np.int64) >= spec.sign_threshold, 1, -1), True
    raise ValueError(f"unknown input mode {spec.mode!r}")


def _windows(values, geom, pad_fill):
    """(N, H, W, C) -> (N, conv_h, conv_w, KH*KW*C) im2col columns in (ky, kx, c) order."""
    n, h, w, c = values.shape
    kh, kw = geom.kernel
    sh, sw = geom.strides
    top, left = geom.pad
    ch, cw = geom.conv_shape
    need_h = (ch - 1) * sh + kh
    need_w = (cw - 1) * sw + kw
    bottom = max(need_h - h - top, 0)
    right = max(need_w - w - left, 0)
    padded = np.full((n, h + top + bottom, w + left + right, c), pad_fill, dtype=values.dtype)
    padded[:, top:top + h, left:left + w, :] = values
    win = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, H', W', C, KH, KW)
    win = win[:, : need_h - kh + 1 : sh, : need_w - kw + 1 : sw]
    win = win.transpose(0, 1, 2, 4, 5, 3)  # (N, ch, cw, KH, KW, C)
    return win.reshape(n, ch, cw, kh * kw * c)


def _conv_acc(values, block, integer, pad_fill):
    geom = block.geometry
    w = np.where(block.weights, 1, -1).reshape(block.weights.shape[0], -1)  # (O, K)
    cols = _windows(values, geom, pad_fill)
    if integer:
        # a float matrix product is exact for integers below the mantissa limit: float32 when sums stay
        # under 2**24, else float64
        bound = float(w.shape[1]) * float(max(np.abs(values).max(initial=0), abs(pad_fill)))
        ftype = np.float32 if bound < 2 ** 24 else np.float64
        return np.rint(cols.astype(ftype) @ w.T.astype(ftype)).astype(np.int64)
    # float input: sequential float32 sum over taps, as the C kernel does
    wf = w.astype(np.float32)
    acc = np.zeros(cols.shape[:3] + (w.shape[0],), dtype=np.float32)
    for k in range(cols.shape[3]):
        acc = acc + cols[..., k, None] * wf[:, k]
    return acc


def _pool_threshold(acc, block):
    """Pooling (max or min per channel) followed by `>= threshold`: (N, ch, cw, O) -> bool bits."""
    geom = block.geometry
    acc = acc.astype(np.float64)
    if geom.pool is not None:
        ph, pw = geom.pool
        psh, psw = geom.pool_strides
        top, left = geom.pool_pad
        oh, ow = geom.out_hw
        n, ch, cw, o = acc.shape
        need_h = (oh - 1) * psh + ph
        need_w = (ow - 1) * psw + pw
        bottom = max(need_h - ch - top, 0)
        right = max(need_w - cw - left, 0)
        pooled = []
        for fill, reduce in ((-np.inf, np.max), (np.inf, np.min)):
            padded = np.full((n, ch + top + bottom, cw + left + right, o), fill)
            padded[:, top:top + ch, left:left + cw, :] = acc
            win = sliding_window_view(padded, (ph, pw), axis=(1, 2))
            win = win[:, : need_h - ph + 1 : psh, : need_w - pw + 1 : psw]
            pooled.append(reduce(win, axis=(4, 5)))
        acc = np.where(block.pool_min, pooled[1], pooled[0])
    return acc >= block.threshold.astype(np.float64)


def _dense_acc(bits, weights):
    ftype = np.float32 if weights.shape[1] < 2 ** 24 else np.float64  # exact: |sum| <= n_in
    a = np.where(bits.reshape(bits.shape[0], -1), 1, -1).astype(ftype)
    w = np.where(weights, 1, -1).astype(ftype)
    return np.rint(a @ w.T).astype(np.int64)


def run_block(block, inputs, spec=None):
    """Run one block on one batch. `inputs`: model input (first block) or bool bits (N, H, W, C)."""
    if block.kind == "input_conv":
        values, integer = _input_values(block.input, inputs)
        if block.geometry.pad_value == 1:
            pad_fill = block.input.pad_q if block.input.mode == "uint8" else 1
        else:
            pad_fill = 0
        return _pool_threshold(_conv_acc(values, block, integer, pad_fill), block)
    if block.kind == "binary_conv":
        values = np.where(inputs, 1, -1).astype(np.int8)
        return _pool_threshold(_conv_acc(values, block, True, block.geometry.pad_value), block)
    if block.kind == "binary_dense":
        acc = _dense_acc(inputs, block.weights)
        return (acc >= block.threshold)[:, None, None, :]
    if block.kind == "output_dense":
        acc = _dense_acc(inputs, block.weights).astype(np.float32)
        return acc * block.scale.astype(np.float32) + block.offset.astype(np.float32)
    raise ValueError(f"unknown block kind {block.kind!r}")


def run(model: LoweredModel, x, keep_bits=True, batch=BATCH, progress=None):
    """Run the lowered model on inputs `x` (N, H, W, C); a model on a flat (n,) Keras input, whose
    chain reads it as (1, 1, n), also takes x of shape (N, n).

    Returns a dict: "logits" float32 (N, K), "classes" int (N,), and, with keep_bits, "bits": one
    bool array (N, H, W, C) per hidden block (block outputs before the output dense block).
    `progress`, if given, is called as progress(done, total) after each batch.
    """
    x = np.asarray(x)
    if x.ndim == 2 and tuple(model.input.shape) == (1, 1, x.shape[1]):  # a flat (N,) Keras input
        x = x.reshape((len(x),) + tuple(model.input.shape))
    if x.shape[1:] != tuple(model.input.shape):
        raise ValueError(f"input shape {x.shape[1:]} does not match the model's {model.input.shape}")
    logits, bits = [], [[] for _ in model.blocks[:-1]]
    for start in range(0, x.shape[0], batch):
        act = x[start:start + batch]
        for i, block in enumerate(model.blocks):
            out = run_block(block, act)
            if i < len(model.blocks) - 1:
                packed = pack_bits(out)  # what is stored between blocks: bits only
                if keep_bits:
                    bits[i].append(packed)
                act = unpack_bits(packed, out.shape[1:])
            else:
                logits.append(out)
        if progress is not None:
            progress(min(start + batch, x.shape[0]), x.shape[0])
    logits = np.concatenate(logits) if logits else np.zeros((0, model.num_classes), np.float32)
    result = {"logits": logits, "classes": classes_of(logits, class_threshold(model))}
    if keep_bits:
        shapes = [b.out_shape for b in model.blocks[:-1]]
        result["bits"] = [unpack_bits(np.concatenate(p), s) for p, s in zip(bits, shapes)]
    return result


def predict(model, x):
    """Class indices for inputs `x`."""
    return run(model, x, keep_bits=False)["classes"]
