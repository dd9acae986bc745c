"""Training recipe for eBNN presets, and batch-norm re-estimation after training."""
import numpy as np

from ._tf import import_larq


def reestimate_batchnorm(model, x, batch_size=1000):
    """Set every BatchNormalization layer's moving mean/variance to the exact statistics of its input
    over `x`, layer by layer (each layer sees the already re-estimated layers before it).

    During training the moving averages trail the latent weights, which keep changing; a BNN's sign
    thresholds are sensitive to that lag. One pass per BN layer, in inference mode; weights untouched.
    """
    tf, _ = import_larq()
    x = np.asarray(x)
    for lay in model.layers:
        if not isinstance(lay, tf.keras.layers.BatchNormalization):
            continue
        probe = tf.keras.Model(model.inputs, lay.input)
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, len(x), batch_size):
            act = probe(np.asarray(x[start:start + batch_size], np.float32), training=False).numpy()
            act = act.reshape(-1, act.shape[-1]).astype(np.float64)
            total = total + act.sum(0)
            total_sq = total_sq + (act * act).sum(0)
            count += act.shape[0]
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 0.0)
        lay.moving_mean.assign(mean.astype(np.float32))
        lay.moving_variance.assign(var.astype(np.float32))
    return model


def shift_augment(x, max_shift, rng):
    """Random integer shifts of up to max_shift pixels (zero fill), per image."""
    if max_shift <= 0:
        return x
    n, h, w, c = x.shape
    padded = np.zeros((n, h + 2 * max_shift, w + 2 * max_shift, c), dtype=x.dtype)
    padded[:, max_shift:max_shift + h, max_shift:max_shift + w] = x
    dy = rng.integers(0, 2 * max_shift + 1, n)
    dx = rng.integers(0, 2 * max_shift + 1, n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def train(model, x_train, y_train, x_val=None, y_val=None, epochs=15, batch_size=128, lr=1e-3,
          final_lr=1e-5, max_shift=0, seed=0, verbose=2):
    """Adam with a cosine-decaying learning rate (lr -> final_lr), sparse categorical cross-entropy.

    max_shift > 0 adds random shifts of up to that many pixels, drawn anew every epoch.
    Returns the Keras History.
    """
    tf, _ = import_larq()
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(lr, steps, alpha=final_lr / lr)
    model.compile(tf.keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    if max_shift <= 0:
        return model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose,
                         validation_data=None if x_val is None else (x_val, y_val))
    history = None
    for epoch in range(epochs):
        h = model.fit(shift_augment(x_train, max_shift, rng), y_train, batch_size=batch_size,
                      initial_epoch=epoch, epochs=epoch + 1, verbose=verbose,
                      validation_data=None if x_val is None else (x_val, y_val))
        if history is None:
            history = h
        else:
            for k, v in h.history.items():
                history.history.setdefault(k, []).extend(v)
    return history


def evaluate(model, x, y, batch_size=1000):
    pred = model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=1) == y))
