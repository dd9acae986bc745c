"""EbnnExport callback and the export pipeline (issue: user entry points)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers.common import ROOT, small_mnist_model
from keras_ebnn import UnsupportedModelError, import_larq
from keras_ebnn.frontdoor.callback import EbnnExport, is_chief

tf, lq = import_larq()


class EpochCounter(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0
        self.batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs += 1

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


def _compiled(model):
    model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_fail_fast_before_training(tmp_path, mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = _compiled(small_mnist_model(tf, lq, pool_layer=tf.keras.layers.ZeroPadding2D(1, name="zpad")))
    counter = EpochCounter()
    with pytest.raises(UnsupportedModelError, match="'zpad' \\(ZeroPadding2D\\)"):
        model.fit(xtr[:256], ytr[:256], epochs=3, verbose=0,
                  callbacks=[EbnnExport(tmp_path / "out", name="m"), counter])
    assert counter.epochs == 0 and counter.batches == 0
    assert not (tmp_path / "out").exists()


def test_subclassed_model_fails_before_training(tmp_path):
    class Sub(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = lq.layers.QuantDense(10, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(tf.zeros((1, 4)))
    model.compile("adam", "mse")
    counter = EpochCounter()
    with pytest.raises(UnsupportedModelError, match="subclassed model Sub is not supported"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 10)), verbose=0,
                  callbacks=[EbnnExport(tmp_path / "out"), counter])
    assert counter.batches == 0 and not (tmp_path / "out").exists()


def test_export_at_end_with_verify(tmp_path, mnist_small):
    xtr, ytr, xte, yte = mnist_small
    tf.keras.utils.set_random_seed(1)
    model = _compiled(small_mnist_model(tf, lq))
    cb = EbnnExport(tmp_path / "out", name="digits", verify_data=(xte, yte), verbose=0)
    model.fit(xtr[:1024], ytr[:1024], epochs=2, batch_size=64, verbose=0, callbacks=[cb])
    assert len(cb.exports) == 1 and cb.exports[0].epoch is None
    out = tmp_path / "out"
    assert (out / "digits.h").is_file() and (out / "digits.c").is_file()
    assert (out / "digits_report.md").is_file()
    result = cb.exports[0]
    # the exported model was verified against Keras and, compiled, against the reference executor
    assert result.agreement.samples == len(xte)
    assert result.agreement.class_agreement >= 0.99
    assert result.c_checked and result.c_matches_reference
    keras_acc = np.mean(np.argmax(model.predict(xte, verbose=0), 1) == yte)
    assert abs(result.keras_accuracy - keras_acc) < 1e-9
    text = (out / "digits_report.md").read_text()
    assert "Reference executor vs Keras" in text and "Compiled C (host) vs reference executor" in text
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert leftovers == []


def test_export_on_improvement(tmp_path, mnist_small):
    xtr, ytr, xte, yte = mnist_small
    tf.keras.utils.set_random_seed(2)
    model = _compiled(small_mnist_model(tf, lq))
    cb = EbnnExport(tmp_path / "best", name="best", monitor="val_accuracy", save_best_only=True,
                    verify=False, verbose=0)
    hist = model.fit(xtr[:1024], ytr[:1024], validation_data=(xte[:200], yte[:200]), epochs=4,
                     batch_size=64, verbose=0, callbacks=[cb])
    vals = hist.history["val_accuracy"]
    expected, best = [], -np.inf
    for epoch, v in enumerate(vals):
        if v > best:
            expected.append(epoch)
            best = v
    assert [r.epoch for r in cb.exports] == expected
    assert cb.best_epoch == expected[-1]
    assert (tmp_path / "best" / "best.c").is_file()


def test_reestimate_bn_exports_a_copy(tmp_path, mnist_small):
    """reestimate_bn: the export holds the re-estimated statistics; the training model keeps its own."""
    from keras_ebnn import lower
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor.callback import plain_copy
    from keras_ebnn.train.training import reestimate_batchnorm
    xtr, ytr, xte, _ = mnist_small
    tf.keras.utils.set_random_seed(4)
    model = _compiled(small_mnist_model(tf, lq))
    cb = EbnnExport(tmp_path / "out", name="re", verify=False, reestimate_bn=xtr[:256], verbose=0)
    model.fit(xtr[:256], ytr[:256], epochs=1, batch_size=64, verbose=0, callbacks=[cb])
    trained = model.get_weights()
    expected = lower(reestimate_batchnorm(plain_copy(model, trained), xtr[:256]), "re")
    logits = graph_reference.run(cb.exports[0].lowered, xte)["logits"]
    assert np.array_equal(logits, graph_reference.run(expected, xte)["logits"])
    assert not np.array_equal(logits, graph_reference.run(lower(model), xte)["logits"])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained))


def test_no_partial_folder_on_failure(tmp_path, monkeypatch, mnist_small):
    """A failure in the middle of writing leaves neither a half-written folder nor temp files,
    and a previous export in the same folder stays as it was."""
    import keras_ebnn.exporters.c as cexp
    from keras_ebnn.frontdoor.exporting import export
    xtr, ytr, _, _ = mnist_small
    model = small_mnist_model(tf, lq)
    out = tmp_path / "out"
    export(model, out, name="m")
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir() if p.is_file())
    real = cexp.export_c

    def failing(lowered, out_dir, name):
        real(lowered, out_dir, name)
        (Path(out_dir) / "partial.txt").write_text("half")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(cexp, "export_c", failing)
    with pytest.raises(OSError, match="simulated"):
        export(model, out, name="m")
    after = sorted((p.name, p.read_bytes()) for p in out.iterdir() if p.is_file())
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # in the callback, a failed export is reported and training goes on; nothing is written
    out2 = tmp_path / "fresh"
    small = _compiled(small_mnist_model(tf, lq))
    cb = EbnnExport(out2, verify=False, verbose=0)
    hist = small.fit(xtr[:128], ytr[:128], epochs=2, verbose=0, callbacks=[cb])
    assert len(hist.history["loss"]) == 2
    assert cb.exports == [] and len(cb.errors) == 1 and "simulated" in str(cb.errors[0])
    assert not out2.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_budget_overrun_keeps_training(tmp_path, mnist_small, capsys):
    xtr, ytr, _, _ = mnist_small
    model = _compiled(small_mnist_model(tf, lq))
    cb = EbnnExport(tmp_path / "o", verify=False, max_ram=16, verbose=0)
    hist = model.fit(xtr[:128], ytr[:128], epochs=2, verbose=0, callbacks=[cb])
    assert len(hist.history["loss"]) == 2 and cb.exports == []
    assert "exceeds the budget of 16 B" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


class _Resolver:
    def __init__(self, task_type, task_id, jobs):
        self.task_type, self.task_id, self._jobs = task_type, task_id, jobs

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._jobs)


class _Strategy:
    def __init__(self, resolver):
        self.cluster_resolver = resolver


def test_is_chief_rules():
    workers = {"worker": ["h:1", "h:2"]}
    with_chief = {"chief": ["h:0"], "worker": ["h:1"]}
    assert is_chief(None)
    assert is_chief(tf.distribute.get_strategy())
    assert is_chief(_Strategy(_Resolver("worker", 0, workers)))
    assert not is_chief(_Strategy(_Resolver("worker", 1, workers)))
    assert is_chief(_Strategy(_Resolver("chief", 0, with_chief)))
    assert not is_chief(_Strategy(_Resolver("worker", 0, with_chief)))


MIRRORED = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    import keras_ebnn
    tf, lq = keras_ebnn.import_larq()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from helpers.common import small_mnist_model
    from keras_ebnn.frontdoor.callback import EbnnExport
    import keras_ebnn.frontdoor.exporting as exporting
    calls = []
    real = exporting.export
    exporting.export = lambda *a, **k: calls.append(1) or real(*a, **k)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = small_mnist_model(tf, lq)
        model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 28, 28, 1)).astype(np.uint8)
    y = rng.integers(0, 10, 256)
    cb = EbnnExport({out!r}, name="mirrored", verify_data=x[:64], verbose=0)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb])
    # the export holds the weights get_weights() gives (batch-norm statistics averaged over replicas)
    plain = small_mnist_model(tf, lq)
    plain.set_weights(model.get_weights())
    from keras_ebnn.ir import graph_reference
    logits = graph_reference.run(keras_ebnn.lower(plain), x[:64])["logits"]
    same = np.array_equal(logits, graph_reference.run(cb.exports[0].lowered, x[:64])["logits"])
    print("EXPORTS", len(calls), len(cb.exports), cb.exports[0].c_matches_reference, same)
""")


def test_mirrored_strategy_exports_once(tmp_path):
    script = tmp_path / "mirrored.py"
    out = tmp_path / "out"
    script.write_text(MIRRORED.format(tests=str(ROOT / "tests"), out=str(out)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EXPORTS 1 1 True True" in proc.stdout
    assert (out / "mirrored.c").is_file()


def test_board_budget_in_callback(tmp_path, mnist_small):
    """EbnnExport(board=...): an unknown board is refused at construction; an export that does not fit
    the board is logged and skipped (training goes on, nothing written), and with force=True written
    with the warning in its notes."""
    from keras_ebnn.frontdoor.exporting import BoardError
    with pytest.raises(BoardError, match="nope"):
        EbnnExport(tmp_path / "x", board="nope")
    xtr, ytr, _, _ = mnist_small
    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    sign = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    big = _compiled(tf.keras.Sequential([  # 31 KB of weights (one array < 32,767 B) + code: over 32 KB
        L.InputLayer((28, 28, 1)), L.Flatten(),
        lq.layers.QuantDense(320, input_quantizer="ste_sign", **sign), L.BatchNormalization(),
        lq.layers.QuantDense(10, input_quantizer="ste_sign", **sign)]))
    refused = EbnnExport(tmp_path / "refused", name="m", target="arduino", board="uno")
    forced = EbnnExport(tmp_path / "forced", name="m", target="arduino", board="uno", force=True, verify=False)
    counter = EpochCounter()
    big.fit(xtr[:128], ytr[:128], epochs=1, verbose=0, callbacks=[refused, forced, counter])
    assert counter.epochs == 1
    assert len(refused.errors) == 1 and "uno" in str(refused.errors[0]) and not (tmp_path / "refused").exists()
    assert len(forced.exports) == 1 and (tmp_path / "forced" / "library.properties").is_file()
    assert any("does not fit board uno" in note for note in forced.exports[0].notes)
