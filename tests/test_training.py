"""keras_ebnn.training: knowledge distillation and flip augmentation (fast checks only)."""
import numpy as np
import pytest

from keras_ebnn import import_larq, models, training


@pytest.fixture(scope="module")
def tf_lq():
    return import_larq()


def test_flip_augment(mnist_small):
    x = mnist_small[0][:200]
    out = training.flip_augment(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    flipped = np.array([np.array_equal(o, i[:, ::-1]) and not np.array_equal(o, i) for o, i in zip(out, x)])
    same = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped | same) and 50 < flipped.sum() < 150


def test_soft_targets_and_loss(tf_lq, mnist_small):
    tf, _ = tf_lq
    x = mnist_small[0][:32]
    teacher = training.teacher_model(width=4)
    probs = teacher.predict(x.astype(np.float32), verbose=0)
    t1 = training.soft_targets(teacher, x, 1.0)
    np.testing.assert_allclose(t1, probs, rtol=1e-3, atol=1e-5)  # T = 1: the teacher's own outputs
    t4 = training.soft_targets(teacher, x, 4.0)
    np.testing.assert_allclose(t4.sum(1), 1.0, rtol=1e-5)
    assert np.all(t4.max(1) <= t1.max(1) + 1e-6)  # softer

    y = np.arange(32) % 10
    packed = np.concatenate([y.reshape(-1, 1).astype(np.float32), t4], axis=1)
    p = tf.nn.softmax(tf.random.normal((32, 10), seed=1))
    hard = tf.keras.losses.sparse_categorical_crossentropy(y, p).numpy()
    np.testing.assert_allclose(training.distillation_loss(0.0, 4.0)(packed, p).numpy(), hard, rtol=1e-5)
    # alpha = 1 and a student equal to the (softened) teacher: zero KL
    logt = tf.math.log(t4)
    same = training.distillation_loss(1.0, 1.0)(packed, tf.nn.softmax(logt)).numpy()
    np.testing.assert_allclose(same, 0.0, atol=1e-5)


def test_train_with_teacher(tf_lq, mnist_small):
    xtr, ytr, _, _ = mnist_small
    teacher = training.teacher_model(width=4)
    training.train(teacher, xtr[:256], ytr[:256], epochs=1, verbose=0)
    student = models.tiny_mnist()
    hist = training.train(student, xtr[:256], ytr[:256], xtr[256:384], ytr[256:384], epochs=2,
                          max_shift=1, hflip=True, teacher=teacher, alpha=0.7, temperature=3.0, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert len(hist.history["val_accuracy"]) == 2
    assert 0.0 <= training.evaluate(student, xtr[256:384], ytr[256:384]) <= 1.0
