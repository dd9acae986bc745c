"""Presets (keras_ebnn.train.models) and the training helpers (keras_ebnn.train.training): fast checks only.

Builds every preset, checks shapes, parameter counts and the memory budgets each one is designed for,
runs one training step on 256 images, and checks batch-norm re-estimation.
"""
import numpy as np
import pytest

from keras_ebnn import import_larq
from keras_ebnn.train import models, training

# preset -> (Keras parameter count incl. latent weights and BN, binary weight bits)
EXPECTED = {
    "paper_mnist": (3750, 10 * 9 + 360 * 10),
    "tiny_mnist": (12926, 16 * 9 + 16 * 32 * 9 + 800 * 10),
    "uno_mnist": (82214, 16 * 9 + 16 * 24 * 9 + 600 * 128 + 128 * 10),
    "demo_mnist": (35038, 32 * 9 + 32 * 64 * 9 + 1600 * 10),
    "m15_mnist": (59950, 32 * 9 + 32 * 64 * 9 + 64 * 48 * 9 + 192 * 64 + 64 * 10),
    "m15_fashion_mnist": (65294, 40 * 25 + 40 * 64 * 9 + 64 * 48 * 9 + 192 * 64 + 64 * 10),
    # found by keras_ebnn.search (models.SEARCHED)
    "m15_search_mnist": (58856, 40 * 25 + 40 * 32 * 9 + 12 * 12 * 32 * 10),
    "uno_search_mnist": (150056, 32 * 25 + 6 * 6 * 32 * 128 + 128 * 10),
}
# 32x32x3 presets -> (parameter count, binary weight bits, max flash data B): 256 KB flash / 64 KB RAM parts
CIFAR = {
    "vgg_cifar10_t": (172814, 3 * 9 * 32 + 32 * 9 * 48 + 48 * 9 * 96 + 96 * 9 * 128 + 512 * 10, 24_000),
    "vgg_cifar10_s": (397950, 3 * 9 * 64 + 64 * 9 * 96 + 96 * 9 * 128 + 128 * 9 * 192 + 768 * 10, 52_000),
    "vgg_cifar10_m": (1151134, 3 * 9 * 64 + 64 * 9 * 128 + 128 * 9 * 128 + 128 * 9 * 256 + 256 * 9 * 256
                      + 4096 * 10, 150_000),
}


@pytest.fixture(scope="module")
def tf_lq():
    return import_larq()


def _kernel_bits(model, lq):
    return sum(int(np.prod(lay.kernel.shape)) for lay in model.layers
               if isinstance(lay, (lq.layers.QuantConv2D, lq.layers.QuantDense)))


def _plan(model):
    from keras_ebnn.exporters.c import memory_plan
    from keras_ebnn.frontend.lowering import lower
    return memory_plan(lower(model))["totals"]


def test_every_preset_is_listed():
    assert set(EXPECTED) | set(CIFAR) == set(models.PRESETS)
    with pytest.raises(ValueError, match="unknown preset"):
        models.get("nope")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_shapes_params_and_lowering(tf_lq, name):
    tf, lq = tf_lq
    model = models.get(name)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    assert isinstance(model.layers[0], tf.keras.layers.Rescaling)  # uint8 input, integer first layer
    params, bits = EXPECTED[name]
    assert model.count_params() == params
    assert _kernel_bits(model, lq) == bits
    totals = _plan(model)  # the exporter accepts it
    assert totals["input_bytes"] == 784
    assert models.get(name, classes=3).output_shape == (None, 3)


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_presets_shapes_params_and_budget(tf_lq, name):
    tf, lq = tf_lq
    model = models.get(name)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert isinstance(model.layers[0], tf.keras.layers.Rescaling)
    params, bits, data = CIFAR[name]
    assert model.count_params() == params and _kernel_bits(model, lq) == bits
    totals = _plan(model)  # the chain exporter takes it: integer stem on uint8, binary convs
    assert totals["input_bytes"] == 3072
    assert totals["flash_data_bytes"] <= data and totals["flash_bytes"] <= 256 * 1024
    assert totals["ram_bytes"] <= 64 * 1024


def test_budgets(tf_lq):
    uno = _plan(models.uno_mnist())
    assert uno["activation_bytes"] <= 900  # Uno: 2 KB SRAM incl. 784 B input and the stack
    assert uno["flash_bytes"] <= 30 * 1024
    m15 = _plan(models.m15_mnist())
    fashion = _plan(models.m15_fashion_mnist())
    # the 15 KB presets are measured in the size build (-Os, EBNN_CHUNK=8, EBNN_LOW_STACK=1), whose code
    # is smaller than the report's -O2 estimate: data + arena must leave >= 4.8 KB for code + stack
    # (Cortex-M3 ELF, bench/accuracy_memory.py: 3.9 KB code, 0.5 KB stack)
    for plan in (m15, fashion):
        assert plan["flash_data_bytes"] + plan["arena_bytes"] <= 15_000 - 4_800
    paper = _plan(models.paper_mnist())
    assert paper["flash_data_bytes"] < 1024


def test_one_training_step_every_preset(tf_lq, mnist_small):
    xtr, ytr, _, _ = mnist_small
    x, y = xtr[:256], ytr[:256]
    for name in ("paper_mnist", "uno_mnist", "m15_mnist"):
        model = models.get(name)
        hist = training.train(model, x, y, epochs=1, batch_size=128, verbose=0)
        assert np.isfinite(hist.history["loss"][0])
        for lay in model.layers:  # weight_clip keeps latent weights in [-1, 1]
            if hasattr(lay, "kernel"):
                assert np.abs(lay.kernel.numpy()).max() <= 1.0 + 1e-6


def test_shift_augmentation_and_schedules(tf_lq, mnist_small):
    xtr, ytr, _, _ = mnist_small
    x = xtr[:64]
    rng = np.random.default_rng(0)
    shifted = training.shift_augment(x, 2, rng)
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    assert not np.array_equal(shifted, x)
    assert shifted.sum(axis=(1, 2, 3)).max() <= x.sum(axis=(1, 2, 3)).max()  # zero fill, no wrap
    assert training.shift_augment(x, 0, rng) is x
    for kind in ("cosine", "exponential"):
        sched = training.lr_schedule(kind, 1e-3, 1e-5, 100)
        assert float(sched(0)) == pytest.approx(1e-3)
        assert float(sched(100)) == pytest.approx(1e-5, rel=1e-3)
    model = models.tiny_mnist()
    hist = training.train(model, xtr[:256], ytr[:256], xtr[256:384], ytr[256:384], epochs=2,
                          batch_size=128, max_shift=1, verbose=0)
    assert len(hist.history["loss"]) == 2 and len(hist.history["val_accuracy"]) == 2


def test_reestimate_batchnorm(tf_lq, mnist_small):
    tf, _ = tf_lq
    xtr, ytr, _, _ = mnist_small
    model = models.tiny_mnist()
    training.train(model, xtr[:512], ytr[:512], epochs=1, batch_size=128, verbose=0)
    bns = [lay for lay in model.layers if isinstance(lay, tf.keras.layers.BatchNormalization)]
    before = [(b.moving_mean.numpy().copy(), b.moving_variance.numpy().copy()) for b in bns]
    gamma_beta = [[w.copy() for w in b.get_weights()[:-2]] for b in bns]
    kernels = [lay.kernel.numpy().copy() for lay in model.layers if hasattr(lay, "kernel")]

    x = xtr[:256].astype(np.float32)
    training.reestimate_batchnorm(model, x, batch_size=100)
    for b, (mean, var), gb in zip(bns, before, gamma_beta):
        assert not np.allclose(b.moving_mean.numpy(), mean)  # after 4 steps at momentum 0.9: stale
        assert not np.allclose(b.moving_variance.numpy(), var)
        assert np.all(b.moving_variance.numpy() >= 0)
        for w, w0 in zip(b.get_weights()[:-2], gb):
            np.testing.assert_array_equal(w, w0)
    for lay, k in zip([lay for lay in model.layers if hasattr(lay, "kernel")], kernels):
        np.testing.assert_array_equal(lay.kernel.numpy(), k)

    # The moving statistics are now the exact statistics of x: inference on x equals training-mode
    # (batch statistics) on the whole of x, up to float rounding right at a sign threshold.
    infer = model(x, training=False).numpy()
    batch = model(x, training=True).numpy()
    assert np.all(np.isfinite(infer))
    np.testing.assert_allclose(infer.sum(1), 1.0, rtol=1e-5)
    assert np.mean(infer.argmax(1) == batch.argmax(1)) >= 0.99
    assert np.median(np.abs(infer - batch)) < 1e-4

    # steps limits the pass to the first steps * batch_size images
    training.reestimate_batchnorm(model, x, batch_size=64, steps=1)
    first = bns[0]
    probe = tf.keras.Model(model.inputs, first.input)
    act = probe(x[:64], training=False).numpy().reshape(-1, first.moving_mean.shape[0])
    np.testing.assert_allclose(first.moving_mean.numpy(), act.mean(0), rtol=1e-4, atol=1e-5)
