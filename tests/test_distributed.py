"""EbnnExport under tf.distribute (issue 14, point 3): the export never disturbs distributed training.

A real two-process MultiWorkerMirroredStrategy on localhost (ports chosen free at run time, time-bounded):
both workers train to the end, only the chief exports, exactly one export folder appears next to
nothing else (no stray temporary folder), and the exported C gives the classes of the Keras model with
the weights the strategy holds at the export (rebuilt here from a snapshot taken on every worker).
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from helpers.common import ROOT, small_mnist_model
from keras_ebnn.frontdoor import host
from keras_ebnn import import_larq, lower
from keras_ebnn.ir import graph_reference

tf, lq = import_larq()

TIME_LIMIT = 240  # seconds for the whole two-worker run; both workers are killed after it
DATA = ROOT / "examples" / "data" / "mnist_test_sample.npz"

WORKER = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import keras_ebnn
    tf, lq = keras_ebnn.import_larq()
    from helpers.common import small_mnist_model
    from keras_ebnn.frontdoor.callback import EbnnExport

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
    tf.keras.utils.set_random_seed(3)
    unsupported = {unsupported!r}
    with strategy.scope():
        pool = tf.keras.layers.ZeroPadding2D(1, name="zpad") if unsupported else None
        model = small_mnist_model(tf, lq, pool_layer=pool)
        model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    data = np.load({data!r})
    x, y = data["x"][:512], data["y"][:512]
    xv, yv = data["x"][512:640], data["y"][512:640]


    class Snapshot(tf.keras.callbacks.Callback):
        # every worker reads the weights at the same point (the read is collective for the batch-norm
        # statistics); the chief keeps them, so the test can rebuild the model of each epoch
        def on_epoch_end(self, epoch, logs=None):
            weights = self.model.get_weights()
            if task == 0:
                np.savez({work!r} + f"/weights_{{epoch}}.npz", *weights)

        def on_train_batch_begin(self, batch, logs=None):
            self.batches = getattr(self, "batches", 0) + 1


    cb = EbnnExport({out!r}, name="mw", save_best_only=True, monitor="val_loss",
                    verify_data=(xv, yv))
    # an export that fails (16 B of RAM is too little) is reported and training goes on
    failing = EbnnExport({parent!r} + "/never", name="never", max_ram=16)
    snapshot = Snapshot()
    if unsupported:
        try:
            model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[cb, snapshot])
        except keras_ebnn.UnsupportedModelError as exc:
            print("REFUSED " + json.dumps(dict(task=task, batches=getattr(snapshot, "batches", 0),
                                               message=str(exc))), flush=True)
        sys.exit(0)
    if task == 0:
        # the chief alone runs the early check: were it to issue a collective op, the workers'
        # collectives would no longer match and training below would fail
        cb.set_model(model)
        cb.on_train_begin()
    hist = model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=64, verbose=0,
                     callbacks=[cb, failing, snapshot])
    summary = dict(task=task, epochs=len(hist.history["loss"]), errors=[str(e) for e in cb.errors],
                   failing=[str(e) for e in failing.errors],
                   exports=[dict(epoch=r.epoch, c_checked=r.c_checked,
                                 c_matches_reference=r.c_matches_reference,
                                 class_agreement=r.agreement.class_agreement,
                                 classes=[int(c) for c in r.classes]) for r in cb.exports])
    print("TRAINING_DONE " + json.dumps(summary), flush=True)
""")


def _free_ports(n):
    """n distinct TCP ports that were free on localhost a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run_workers(script, work, n=2, attempts=3):
    """Run n workers of one cluster on free localhost ports; return [(returncode, stdout, stderr)].

    The whole run is bounded by TIME_LIMIT (then every worker is killed and the test fails); when one
    worker fails, the others are killed at once (they would wait for it). A port taken by another
    process between choosing and binding it is retried with new ports."""
    for _ in range(attempts):
        results = _run_cluster(script, work, n)
        if not any(code != 0 and "Could not start gRPC server" in err for code, _, err in results):
            return results
    errs = "\n".join(e[-2000:] for c, _, e in results if c != 0)
    pytest.fail(f"could not start the cluster's gRPC servers in {attempts} attempts:\n{errs}")


def _run_cluster(script, work, n):
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(n)]}
    procs, logs = [], []
    for i in range(n):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        out, err = open(work / f"worker{i}.out", "w+"), open(work / f"worker{i}.err", "w+")
        logs.append((out, err))
        procs.append(subprocess.Popen([sys.executable, str(script)], stdout=out, stderr=err, env=env,
                                      cwd=work))
    deadline = time.monotonic() + TIME_LIMIT
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
            break
        time.sleep(0.2)
    timed_out = [p.poll() is None for p in procs] if time.monotonic() >= deadline else [False] * n
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    results = []
    for p, (out, err) in zip(procs, logs):
        out.seek(0), err.seek(0)
        results.append((p.returncode, out.read(), err.read()))
        out.close(), err.close()
    if any(timed_out):
        pytest.fail(f"workers {[i for i, t in enumerate(timed_out) if t]} still running after {TIME_LIMIT} s "
                    "(killed)\n" + "\n".join(f"--- worker {i}\n{o[-2000:]}\n{e[-3000:]}"
                                             for i, (_, o, e) in enumerate(results)))
    return results


def _marked(stdout, marker):
    """The JSON a worker printed after `marker`, or None."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(marker + " ")]
    return json.loads(lines[-1][len(marker) + 1:]) if lines else None


def _start(tmp_path, unsupported=False):
    work, parent = tmp_path / "work", tmp_path / "exports"
    work.mkdir()
    parent.mkdir()
    script = work / "worker.py"
    script.write_text(WORKER.format(tests=str(ROOT / "tests"), data=str(DATA), work=str(work),
                                    parent=str(parent), out=str(parent / "mw"), unsupported=unsupported))
    return work, parent, _run_workers(script, work)


def test_multi_worker_mirrored_strategy_exports_once(tmp_path):
    work, parent, results = _start(tmp_path)
    summaries = [_marked(o, "TRAINING_DONE") for _, o, _ in results]
    for i, ((code, o, e), s) in enumerate(zip(results, summaries)):
        assert code == 0 and s is not None, f"worker {i} exit {code}\n{o[-3000:]}\n{e[-5000:]}"
        assert s["epochs"] == 2 and s["errors"] == [], (i, s)
    chief, other = summaries
    assert other["exports"] == [] and other["failing"] == []  # only the chief exports
    assert len(chief["exports"]) >= 1  # the first epoch always improves on +inf
    # the failed export was reported on one line, not raised, and wrote nothing
    assert len(chief["failing"]) == 1 and "exceeds the budget of 16 B" in chief["failing"][0]
    lines = [ln for ln in results[0][1].splitlines() if "not exported" in ln]
    assert len(lines) == 1 and lines[0].startswith("EbnnExport: not exported: RAM"), lines
    # exactly one export folder, and nothing else (no temporary or old folder) beside it
    out = parent / "mw"
    assert sorted(p.name for p in parent.iterdir()) == ["mw"]
    assert (out / "mw.c").is_file() and (out / "mw.h").is_file() and (out / "mw_report.md").is_file()
    last = chief["exports"][-1]
    assert last["c_checked"] and last["c_matches_reference"] and last["class_agreement"] >= 0.99
    # independently: the Keras model with the weights the strategy held at that epoch (batch-norm
    # statistics averaged over both workers), lowered here, gives the reference the chief exported;
    # the exported C (ASan/UBSan) gives its logits bit for bit, and Keras's classes
    xv = np.load(DATA)["x"][512:640]
    with np.load(work / f"weights_{last['epoch']}.npz") as snap:
        weights = [snap[f"arr_{i}"] for i in range(len(snap.files))]
    model = small_mnist_model(tf, lq)
    model.set_weights(weights)
    lowered = lower(model, name="mw")
    ref = graph_reference.run(lowered, xv)
    assert np.array_equal(ref["classes"], last["classes"])
    keras_classes = model.predict(xv.astype(np.float32), verbose=0).argmax(axis=1)
    assert np.mean(keras_classes == ref["classes"]) >= 0.99
    if host.find_cc() is not None:
        from helpers.cbuild import run_model
        classes, logits, _ = run_model(lowered, out, "mw", xv)
        assert np.array_equal(classes, ref["classes"]) and np.array_equal(logits, ref["logits"])


def test_multi_worker_unsupported_model_fails_before_training(tmp_path):
    """The early check refuses the model on every worker before any batch runs, and writes nothing."""
    work, parent, results = _start(tmp_path, unsupported=True)
    for i, (code, o, e) in enumerate(results):
        refused = _marked(o, "REFUSED")
        assert code == 0 and refused is not None, f"worker {i} exit {code}\n{o[-3000:]}\n{e[-5000:]}"
        assert refused["batches"] == 0 and "'zpad' (ZeroPadding2D)" in refused["message"], refused
    assert list(parent.iterdir()) == []
