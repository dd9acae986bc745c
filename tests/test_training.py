"""keras_ebnn.train.training: knowledge distillation and flip augmentation (fast checks only)."""
import numpy as np
import pytest

from keras_ebnn import import_larq
from keras_ebnn.train import models, training


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


def test_train_script_without_validation(tf_lq, tmp_path, monkeypatch):
    """examples/train_mnist.py --val-size 0 trains on every training image (no held-out split) and
    reports no validation accuracy; a negative size is refused."""
    import json
    import sys
    from keras_ebnn.train import datasets
    from helpers.common import ROOT
    if datasets.find_dir("mnist") is None:  # any clone: the shipped sample as IDX files
        from helpers.common import write_sample_idx
        monkeypatch.setenv("EBNN_DATA_DIR", str(write_sample_idx(tmp_path / "data" / "mnist")))
    sys.path.insert(0, str(ROOT / "examples"))
    import train_mnist
    (xtr, ytr), test = datasets.load("mnist")
    monkeypatch.setattr(datasets, "load", lambda *a, **k: ((xtr[:600], ytr[:600]), test))
    seen = {}
    real_train = training.train
    monkeypatch.setattr(training, "train", lambda model, x, y, xv, yv, **kw: seen.update(n=len(x), val=xv) or
                        real_train(model, x, y, xv, yv, **kw))
    results = tmp_path / "r.jsonl"
    assert train_mnist.main(["--preset", "paper_mnist", "--epochs", "1", "--val-size", "0", "--skip-test",
                             "--no-reestimate-bn", "--out", str(tmp_path / "m.keras"), "--results", str(results)]) == 0
    assert seen == {"n": 600, "val": None}
    row = json.loads(results.read_text())
    assert row["val_accuracy"] != row["val_accuracy"] and row["reload_ok"]  # NaN: no validation split
    with pytest.raises(SystemExit):
        train_mnist.main(["--val-size", "-1", "--out", str(tmp_path / "x.keras")])


@pytest.mark.parametrize("shift", [0, 1])  # 0: one fit call (callback); 1: one fit per augmented epoch
def test_time_budget_stops_after_the_epoch_that_exhausts_it(tf_lq, mnist_small, shift):
    x, y = mnist_small[0][:64], mnist_small[1][:64]
    model = models.get("paper_mnist")
    hist = training.train(model, x, y, epochs=5, batch_size=32, verbose=0, max_shift=shift, time_budget=0.0)
    assert len(hist.history["loss"]) == 1  # the first epoch runs; no second one fits in 0 s
    hist = training.train(models.get("paper_mnist"), x, y, epochs=3, batch_size=32, verbose=0, max_shift=shift,
                          time_budget=3600.0)
    assert len(hist.history["loss"]) == 3
