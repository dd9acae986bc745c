"""keras_ebnn.search: quick search end to end, budgets checked before training, resume, workers.

Data: the shipped 1,000-image MNIST sample (800 train incl. 200 validation, 200 test). Tests that are
about the search machinery (budgets, resume, workers) replace the training by a stand-in
(`search.train_candidate` patched) so they take seconds; the end-to-end test trains for real.
"""
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "data" / "mnist_test_sample.npz"

optuna = pytest.importorskip("optuna")

import keras_ebnn  # noqa: E402
from keras_ebnn.train import search as S  # noqa: E402
from keras_ebnn.train.search_space import DEFAULT_SPACE, Choice  # noqa: E402

# a small space: fast to build and lower; 8 or 48 input filters so that a flash budget splits it
SMALL = replace(DEFAULT_SPACE, input_filters=Choice((8, 48)), input_kernel=Choice((3,)), input_stride=Choice((2,)),
                input_pool=Choice((0, 2)), conv_blocks=Choice((0, 1)), max_conv_blocks=1, conv_filters=Choice((8, 16)),
                conv_padding=Choice(("valid",)), conv_pool=Choice((0,)), dense_layers=Choice((0,)),
                output_scale=Choice((False,)), shift=Choice((0,)))


FIXED = dict(input_filters=8, input_kernel=3, input_stride=2, input_pool=0, conv_blocks=0, conv_kernel=3,
             conv1_filters=8, conv2_filters=8, conv1_pool=0, conv2_pool=0, conv1_padding="valid",
             conv2_padding="valid", dense_layers=0, dense_units=32, output_scale=False, lr=1e-3, shift=0,
             bn_reestimate=True)


def sample_data():
    d = np.load(SAMPLE)
    x, y = d["x"].reshape(-1, 28, 28, 1), d["y"].reshape(-1)
    return (x[:800], y[:800]), (x[800:], y[800:])


def fake_train(calls):
    """A stand-in for train_candidate: records the candidate's estimated cost, returns a made-up
    'accuracy' that prefers more input filters (so the front has a trade-off)."""
    def train(model, params, train, val, epochs, **kw):
        from keras_ebnn.frontend.lowering import lower
        calls.append(S.estimate(lower(model), "cortex-m3"))
        return 0.5 + params["input_filters"] / 1000 + params["lr"]
    return train


def test_space_covers_the_presets():
    """The default space holds uno_mnist and m15_mnist: built from parameters they lower to the same
    memory plan as the presets themselves."""
    from keras_ebnn.train import models
    from keras_ebnn.exporters.c import memory_plan
    from keras_ebnn.frontend.lowering import lower
    common = dict(conv_kernel=3, output_scale=False, lr=1e-3, shift=0, bn_reestimate=True, input_kernel=3)
    uno = dict(common, input_filters=16, input_stride=2, input_pool=0, conv_blocks=1, conv1_filters=24, conv1_pool=2,
               conv1_padding="valid", dense_layers=1, dense_units=128)
    m15 = dict(common, input_filters=32, input_stride=1, input_pool=2, conv_blocks=2, conv1_filters=64, conv1_pool=2,
               conv1_padding="valid", conv2_filters=48, conv2_pool=2, conv2_padding="same", dense_layers=1, dense_units=64)
    for params, preset in ((uno, models.uno_mnist()), (m15, models.m15_mnist())):
        built = memory_plan(lower(DEFAULT_SPACE.build(params)))["totals"]
        assert built == memory_plan(lower(preset))["totals"]
    assert DEFAULT_SPACE.describe(uno) == "c3x3/2:16 > c3x3:24 p2 > d128; lr 1.0e-03"
    with pytest.raises(ValueError, match="max_conv_blocks"):
        DEFAULT_SPACE.layers(dict(m15, conv_blocks=3))
    with pytest.raises(ValueError, match="does not fit"):
        DEFAULT_SPACE.build(dict(m15, input_kernel=5, input_stride=2, conv1_padding="valid", conv2_padding="valid"))


def test_budgets_and_estimate():
    from keras_ebnn.train import models
    from keras_ebnn.frontend.lowering import lower
    assert keras_ebnn.search is S and callable(keras_ebnn.search)
    uno = S.board_budget("uno")
    assert (uno["cpu"], uno["flash"], uno["ram"]) == ("avr", 32_256, 2_048)
    with pytest.raises(ValueError, match="unknown board"):
        S.board_budget("no-such-board")
    assert S.Budget("cortex-m4").clock_mhz == 64 and "16 MHz" in S.Budget("avr", max_ms=100).text()
    cost = S.estimate(lower(models.uno_mnist()), "avr")
    assert cost["ram"] == cost["arena"] + cost["stack"] + 784 and cost["bytes"] == cost["flash"] + cost["arena"] + cost["stack"]
    b = S.Budget("avr", max_flash=cost["flash"] - 1, max_ram=cost["ram"], max_ms=cost["ms"] * 2)
    assert len(b.violations(cost)) == 1 and b.violations(cost)[0].startswith("flash")
    assert not S.Budget("avr", cost["flash"], cost["ram"], cost["bytes"], cost["ms"]).violations(cost)


def test_load_data_from_a_folder_and_an_npz(sample_data_dir):
    (xtr, ytr), (xte, yte) = S.load_data(sample_data_dir / "mnist")
    assert xtr.shape == (700, 28, 28, 1) and len(yte) == 300
    (xtr, ytr), (xte, yte) = S.load_data(SAMPLE)
    assert len(xtr) == 800 and len(xte) == 200 and xtr.dtype == np.uint8
    (a, _), (b, _) = S.split_validation(xtr, ytr, 100)
    assert len(a) == 700 and np.array_equal(b[0], xtr[700])


def test_infeasible_candidates_never_train(tmp_path, monkeypatch):
    """Every candidate over the flash budget is PRUNED with the reason recorded, and the training
    function is called exactly for the trained (complete, non-duplicate) trials, all within budget."""
    calls = []
    monkeypatch.setattr(S, "train_candidate", fake_train(calls))
    limit = 6_000  # some small candidates fit; no 48-filter one does
    log = io.StringIO()
    res = S.search(data=sample_data(), max_flash=limit, cpu="cortex-m3", trials=4, epochs=1, val_size=200,
                   out=tmp_path, space=SMALL, final=False, seed=3, sampler="random", stream=log, measure="model")
    trials = res.study.get_trials()
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert res.complete == len(done) == 4 and res.infeasible == len(pruned) > 0
    assert all("flash" in t.user_attrs["infeasible"] and t.user_attrs["flash"] > limit for t in pruned)
    assert len(calls) == sum("duplicate_of" not in t.user_attrs for t in done) > 0
    assert all(c["flash"] <= limit for c in calls)
    assert (tmp_path / "pareto.md").is_file() and "infeasible" in (tmp_path / "pareto.md").read_text()
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("[trial ")]  # the progress display
    assert len(lines) == len(trials) and lines[-1].startswith(f"[trial 4/4 trained, {len(pruned)} infeasible]")
    assert "best val" in lines[-1] and "elapsed 0:00:" in lines[-1] and "ETA 0:00:00" in lines[-1]


def test_resume_after_interrupt_keeps_trials(tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt in the third training) stops the search; the same call resumes
    it: the two finished trials are kept unchanged, the interrupted candidate runs again first."""
    calls = []
    inner = fake_train(calls)

    def interrupted(model, params, *a, **kw):
        if len(calls) == 2:
            calls.append(None)
            raise KeyboardInterrupt
        return inner(model, params, *a, **kw)
    monkeypatch.setattr(S, "train_candidate", interrupted)
    kw = dict(data=sample_data(), max_flash=6_000, trials=4, epochs=1, val_size=200, out=tmp_path, space=SMALL,
              final=False, sampler="random", stream=io.StringIO(), study_name="resume", measure="model")
    with pytest.raises(KeyboardInterrupt):
        S.search(seed=1, **kw)
    storage = S.open_storage(S.default_storage(tmp_path))
    before = optuna.load_study(study_name="resume", storage=storage).get_trials()
    done = {t.number: t.values for t in before if t.state == optuna.trial.TrialState.COMPLETE}
    failed = [t for t in before if t.state == optuna.trial.TrialState.FAIL]
    assert len(done) == 2 and len(failed) == 1

    monkeypatch.setattr(S, "train_candidate", inner)
    res = S.search(seed=2, **kw)
    after = {t.number: t for t in res.study.get_trials()}
    assert all(after[n].values == v for n, v in done.items())  # earlier trials kept as they were
    retry = [t for t in after.values() if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    assert retry[0].state == optuna.trial.TrialState.COMPLETE
    assert res.complete == 4


def test_an_error_fails_only_its_trial(tmp_path, monkeypatch):
    """An exception in one trial's training fails that trial (its error recorded), the search goes
    on, and a resumed search does not retry it."""
    calls = []
    inner = fake_train(calls)

    def flaky(model, params, *a, **kw):
        if not calls:
            calls.append(None)
            raise RuntimeError("diverged")
        return inner(model, params, *a, **kw)
    monkeypatch.setattr(S, "train_candidate", flaky)
    kw = dict(data=sample_data(), max_flash=6_000, trials=2, epochs=1, val_size=200, out=tmp_path, space=SMALL,
              final=False, sampler="random", stream=io.StringIO(), measure="model")
    res = S.search(seed=4, **kw)
    failed = res.study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert res.complete == 2 and len(failed) == 1 and "diverged" in failed[0].user_attrs["error"]
    res = S.search(seed=4, **dict(kw, trials=3))
    assert not any("retry_of" in t.user_attrs for t in res.study.get_trials())


WORKER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from keras_ebnn.train import search as S
    sys.path.insert(0, {tests!r})
    from test_search import SMALL, sample_data

    def train(model, params, *a, **kw):  # stand-in training: a little time, a made-up accuracy
        time.sleep({sleep})
        deadline = time.time() + 120
        while {wait_other} and time.time() < deadline:  # until the other worker has trained a trial
            import optuna
            trials = optuna.load_study(study_name="shared", storage=STORAGE).get_trials()
            if any(t.state.name == "COMPLETE" and t.user_attrs.get("pid") != os.getpid() for t in trials):
                break
            time.sleep(0.2)
        return 0.5 + params["input_filters"] / 1000 + params["lr"]
    STORAGE = S.open_storage({storage!r})
    S.train_candidate = train
    S.search(data=sample_data(), max_flash=6000, trials={trials}, epochs=1, val_size=200, out={out!r},
             storage={storage!r}, study_name="shared", space=SMALL, final=False, sampler="random", measure="model")
""")


def _worker(tmp_path, storage, trials, sleep=0.1, tag="w", wait_other=False):
    """A worker process running the search with a stand-in training of `sleep` s; wait_other: its
    trainings wait until another process has trained a trial (so that both workers contribute)."""
    script = tmp_path / f"worker_{tag}.py"
    script.write_text(WORKER.format(root=str(ROOT), tests=str(ROOT / "tests"), sleep=sleep, trials=trials,
                                    out=str(tmp_path / "out"), storage=storage, wait_other=wait_other))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _two_workers(tmp_path, monkeypatch, storage, trials=6):
    """Worker 1: a subprocess; worker 2: this process, joining once worker 1 is in a training (which
    waits until this process has trained a trial: both contribute, whatever the machine's load).
    Both run the same search on one study (stand-in training of 0.5 s per trial); then one front
    over all the trials."""
    from keras_ebnn.frontend.lowering import lower
    lower(SMALL.build(FIXED))  # TF loaded here before worker 1 starts, so this process joins in time
    proc = _worker(tmp_path, storage, trials, sleep=0.5, wait_other=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            started = optuna.load_study(study_name="shared", storage=S.open_storage(storage)).get_trials()
            if any("key" in t.user_attrs for t in started):  # worker 1 is in a training (waiting for us)
                break
        except KeyError:  # no such study yet
            pass
        time.sleep(0.3)
    inner = fake_train([])
    monkeypatch.setattr(S, "train_candidate", lambda *a, **kw: time.sleep(0.5) or inner(*a, **kw))
    kw = dict(data=sample_data(), max_flash=6000, trials=trials, epochs=1, val_size=200, out=tmp_path / "out",
              storage=storage, study_name="shared", space=SMALL, final=False, stream=io.StringIO(),
              measure="model", sampler="random")
    S.search(**kw)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    # the final step: the same search; the study already holds its trials -> no new training
    res = S.search(**kw)
    done = res.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) >= trials and len({t.number for t in done}) == len(done)
    pids = {t.user_attrs["pid"] for t in done}
    assert pids == {proc.pid, os.getpid()}, "both workers contributed trials"
    assert res.front and {r["trial"] for r in res.front} <= {t.number for t in done}
    assert res.front[0]["val_accuracy"] == max(t.values[0] for t in done)  # one front over every worker's trials
    return res


def test_two_workers_share_a_journal_file(tmp_path, monkeypatch):
    _two_workers(tmp_path, monkeypatch, str(tmp_path / "shared.journal"))


def test_crashed_worker_trial_is_retried(tmp_path):
    """kill -9 during a trial: the trial stays RUNNING in the journal file; the next run finds its
    process gone, marks it FAIL and runs its candidate again; finished trials are kept."""
    storage = str(tmp_path / "crash.journal")
    proc = _worker(tmp_path, storage, trials=50, sleep=1.5, tag="crash")
    study = None
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="shared", storage=S.open_storage(storage))
        except KeyError:
            continue
        states = [t.state for t in study.get_trials()]
        last = study.get_trials()[-1] if states else None
        if states.count(optuna.trial.TrialState.COMPLETE) >= 2 and last.state == optuna.trial.TrialState.RUNNING \
                and "key" in last.user_attrs:  # in its (1.5 s) training
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = optuna.load_study(study_name="shared", storage=S.open_storage(storage)).get_trials()
    running = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1
    calls = []
    orig = S.train_candidate
    S.train_candidate = fake_train(calls)
    try:
        res = S.search(data=sample_data(), max_flash=6000, trials=len([t for t in before if t.values]) + 1, epochs=1,
                       val_size=200, out=tmp_path / "out", storage=storage, study_name="shared", space=SMALL,
                       final=False, stream=io.StringIO(), measure="model")
    finally:
        S.train_candidate = orig
    after = {t.number: t for t in res.study.get_trials()}
    assert after[running[0].number].state == optuna.trial.TrialState.FAIL
    assert any(t.user_attrs.get("retry_of") == running[0].number for t in after.values())
    assert all(after[t.number].values == t.values for t in before if t.state == optuna.trial.TrialState.COMPLETE)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server (Debian's postgresql package) on 127.0.0.1 and a free port,
    data and socket in a temporary folder; run as the postgres user when the tests run as root."""
    import tempfile
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.importorskip("psycopg")
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")) if Path("/usr/lib/postgresql").is_dir() else []
    if not bins:
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) not installed")
    bindir = bins[-1].parent
    prefix = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start postgres as another user")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="ebnn-pg-"))
    os.chmod(base, 0o777)
    data, sock, port, log = base / "data", base / "sock", _free_port(), base / "server.log"
    sock.mkdir()
    os.chmod(sock, 0o777)
    try:
        r = subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "ebnn", "--auth=trust", "-E", "UTF8"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"initdb failed: {r.stderr[-500:]}")
        r = subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                                     f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {r.stderr[-300:]} {log.read_text()[-300:] if log.exists() else ''}")
        try:
            subprocess.run(prefix + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "ebnn",
                                     "search"], check=True, capture_output=True, text=True)
            yield f"postgresql://ebnn@127.0.0.1:{port}/search"
        finally:
            subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, text=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, monkeypatch, postgres_url):
    _two_workers(tmp_path, monkeypatch, postgres_url)


def test_quick_search_cli_end_to_end(tmp_path):
    """The CLI in quick mode on the sample: real (1-epoch) training of two trials, the front written,
    the best model retrained, tested once, saved and exported as C that matches the reference."""
    from keras_ebnn.frontdoor.host import find_cc
    out = tmp_path / "out"
    rc = S.main(["--dataset", str(SAMPLE), "--board", "uno", "--max-ms", "150", "--trials", "2", "--epochs", "1",
                 "--val-size", "150", "--final-epochs", "1", "--final-candidates", "2", "--seed", "0", "--measure",
                 "model", "-o", str(out)])
    assert rc == 0
    for f in ("pareto.md", "report.md", "best.json", "best.keras", "best_c/best.c", "search.journal"):
        assert (out / f).is_file(), f
    pytest.importorskip("matplotlib")
    assert (out / "pareto.png").stat().st_size > 1000
    final = json.loads((out / "best.json").read_text())
    assert final["fits"] and 0.0 <= final["test_accuracy_keras"] <= 1.0
    assert final["test_accuracy_c"] == pytest.approx(final["test_accuracy_keras"], abs=0.01)
    # --final-candidates 2: up to two front trials retrained, the best on validation kept
    cands = final["candidates"]
    assert 1 <= len(cands) <= 2 and final["val_accuracy"] == max(c["val_accuracy"] for c in cands)
    assert final["trial"] in [c["trial"] for c in cands if c["val_accuracy"] == final["val_accuracy"]]
    if len(cands) == 2:
        assert "chosen among the 2 most accurate front trials" in (out / "report.md").read_text()
    if find_cc() is not None:
        assert final["c_checked"] and final["c_matches_reference"]
    report = (out / "report.md").read_text()
    assert "evaluated **once** on the test set" in report and "validation split" in report
    # rerun: the study is complete, nothing is trained again (same front)
    front = (out / "pareto.md").read_text()
    assert S.main(["--dataset", str(SAMPLE), "--board", "uno", "--max-ms", "150", "--trials", "2", "--epochs", "1",
                   "--val-size", "150", "--no-final", "--measure", "model", "-o", str(out)]) == 0
    assert (out / "pareto.md").read_text() == front


@pytest.mark.targets
@pytest.mark.parametrize("cpu", ["avr", "cortex-m3"])
def test_emulator_measures_every_candidate(tmp_path, monkeypatch, cpu):
    """measure="emulator": a candidate passing the plan's exact lower bounds is measured in
    simavr / QEMU before training (flash, RAM, ms exact), the trained model again (its ms recorded);
    what is over the speed budget is never trained."""
    if not S.emulator_available(cpu):
        pytest.skip(f"no emulator toolchain for {cpu}")
    calls = []
    monkeypatch.setattr(S, "train_candidate", fake_train(calls))
    measured = []
    real = S.measure
    monkeypatch.setattr(S, "measure", lambda *a: measured.append(real(*a)) or measured[-1])
    max_ms = {"avr": 60.0, "cortex-m3": 3.0}[cpu]
    n = {"avr": 2, "cortex-m3": 1}[cpu]  # QEMU measurements are slower (two builds and runs each)
    res = S.search(data=sample_data(), cpu=cpu, max_ms=max_ms, max_flash=12_000, trials=n, epochs=1, val_size=200,
                   out=tmp_path, space=SMALL, final=False, seed=5, sampler="random", stream=io.StringIO(),
                   measure="emulator", measure_images=3)
    done = res.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == n and len(calls) == sum("duplicate_of" not in t.user_attrs for t in done)
    for t in done:
        assert t.user_attrs["source"] == "emulator" and "ms_random_weights" in t.user_attrs
        assert t.user_attrs["flash"] <= 12_000 and t.user_attrs["ms_random_weights"] <= max_ms
    slow = [t for t in res.study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
            if "time" in t.user_attrs.get("infeasible", "")]
    assert all(t.user_attrs["ms"] > max_ms for t in slow if t.user_attrs.get("source") == "emulator")
    assert all(m["source"] == "emulator" and m["stack"] > 0 and m["ops"] > 0 for m in measured)


def test_cli_requires_a_budget(capsys):
    with pytest.raises(SystemExit):
        S.main(["-o", "/tmp/x"])
    assert "give a budget" in capsys.readouterr().err


def _inky_measure(calls):
    """A stand-in for S.measure (no emulator): every image costs its ink (non-zero pixels) / 10 ms, so
    the mean and the slowest probe image differ; flash and RAM are small constants."""
    def measure(lowered, cpu, images, clock_mhz=None):
        each = np.count_nonzero(np.asarray(images).reshape(len(images), -1), axis=1) / 10.0
        calls.append(np.asarray(images))
        return {"flash": 4000, "ram": 1500, "bytes": 4716, "arena": 300, "stack": 416, "input": 784, "code": 3000,
                "ops": float(each.mean() * 16e3), "ms": float(each.mean()), "ops_max": float(each.max() * 16e3),
                "ms_max": float(each.max()), "images": len(images), "source": "emulator"}
    return measure


def test_probe_images_hold_the_inkiest():
    x = sample_data()[1][0]
    ink = np.count_nonzero(x.reshape(len(x), -1), axis=1)
    probe = S.probe_images(x, 10, "max")
    assert len(probe) == 10 and np.array_equal(probe[:5], x[:5])  # half the first images
    assert any(np.array_equal(p, x[int(np.argmax(ink))]) for p in probe)  # the inkiest image is probed
    assert np.array_equal(S.probe_images(x, 10, "mean"), x[:10])
    cost = {"ms": 50.0, "ops": 8e5, "ms_max": 120.0, "ops_max": 1.92e6}
    assert S.budgeted(cost, "max")["ms"] == 120.0 and S.budgeted(cost, "max")["ms_mean"] == 50.0
    assert S.budgeted(S.budgeted(cost, "max"), "mean")["ms"] == 50.0
    assert S.budgeted({"ms": 7.0, "ops": 1.0}, "max")["ms"] == 7.0  # the cost model: one figure
    assert "per image" in S.Budget("avr", max_ms=100).text() and "mean" in S.Budget("avr", max_ms=100, ms_stat="mean").text()
    with pytest.raises(ValueError, match="ms_stat"):
        S.Budget("avr", max_ms=100, ms_stat="p99")


def test_worst_case_time_budget(tmp_path, monkeypatch):
    """--ms-stat max (the default) bounds the slowest probe image: a budget between the probe images'
    mean and their slowest rejects every candidate before training; --ms-stat mean trains them. The
    final model is then run on test images too: best.json and report.md give mean and slowest image."""
    data = sample_data()
    val = data[0][0][-200:]
    probe = S.probe_images(val, 6, "max")
    each = np.count_nonzero(probe.reshape(len(probe), -1), axis=1) / 10.0
    first = np.count_nonzero(val[:6].reshape(6, -1), axis=1) / 10.0  # the probe images of --ms-stat mean
    limit = float((max(each.mean(), first.mean()) + each.max()) / 2)
    assert each.mean() < limit < each.max() and first.mean() < limit
    calls, measured = [], []
    monkeypatch.setattr(S, "train_candidate", fake_train(calls))
    monkeypatch.setattr(S, "measure", _inky_measure(measured))
    monkeypatch.setattr(S, "emulator_available", lambda cpu: True)
    monkeypatch.setattr(S, "SPEED_MODEL_ERROR", 1e9)  # the cost model's lower bound lets every candidate through
    kw = dict(data=data, cpu="avr", max_ms=limit, trials=1, epochs=1, val_size=200, space=SMALL, seed=0,
              sampler="random", stream=io.StringIO(), measure="emulator", measure_images=6)
    res = S.search(out=tmp_path / "max", final=False, max_infeasible=3, **kw)
    assert res.complete == 0 and res.infeasible == 3 and not calls
    for t in res.study.get_trials():
        assert "time" in t.user_attrs["infeasible"] and t.user_attrs["ms"] == t.user_attrs["ms_max"] > limit
        assert t.user_attrs["ms_mean"] < limit
    assert all(np.array_equal(m, probe) for m in measured)

    res = S.search(out=tmp_path / "mean", ms_stat="mean", final=True, final_measure_images=50, **kw)
    assert res.complete == 1 and calls
    done = res.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))[0]
    assert done.user_attrs["ms"] == done.user_attrs["ms_mean"] == pytest.approx(first.mean())
    assert done.user_attrs["ms_max"] == pytest.approx(first.max())
    final = json.loads((tmp_path / "mean" / "best.json").read_text())
    test_each = np.count_nonzero(data[1][0][:50].reshape(50, -1), axis=1) / 10.0
    assert final["test_time"] == {"images": 50, "ms_mean": pytest.approx(test_each.mean()),
                                  "ms_max": pytest.approx(test_each.max())}
    report = (tmp_path / "mean" / "report.md").read_text()
    assert f"{test_each.max():.1f} ms for the slowest image" in report and "on average" in report
    assert "ms mean / slowest probe image" in (tmp_path / "mean" / "pareto.md").read_text()


def test_describe_text_builds_the_model():
    """SearchSpace.parse inverts describe (every text of the BENCHMARKS fronts builds its network again),
    and keras_ebnn.train.models builds the searched presets from their search records."""
    from keras_ebnn.train import models
    texts = ["c5x5:40 p2 > c3x3s:32; lr 1.9e-02 shift 1 scale", "c5x5/2:32 p2 > d128; lr 2.1e-02 scale",
             "c3x3/2:16 > c3x3:24 p2 > d128; lr 3.0e-03 shift 1", "c5x5/2:8 p2; lr 9.7e-03 scale",
             "c3x3:32 p2 > c3x3:64 p2 > c3x3s:48 p2 > d64; lr 1.0e-03 no-bn-re-est 7 ep"]
    for text in texts:
        params = DEFAULT_SPACE.parse(text)
        assert DEFAULT_SPACE.describe(params) == text
        DEFAULT_SPACE.build(params)  # a valid geometry
    p = DEFAULT_SPACE.parse(texts[0])
    assert (p["input_kernel"], p["input_stride"], p["input_filters"], p["input_pool"]) == (5, 1, 40, 2)
    assert (p["conv_blocks"], p["conv1_filters"], p["conv1_padding"], p["conv1_pool"]) == (1, 32, "same", 0)
    assert p["lr"] == 1.9e-2 and p["shift"] == 1 and p["output_scale"] and p["dense_layers"] == 0
    for bad in ("d128; lr 1e-02", "c3x3:8 > d64 > c3x3:8; lr 1.0e-02", "c3x3:8", "c3x3:8 > c3x3:8 > c3x3:8 > c3x3:8; lr 1e-2"):
        with pytest.raises(ValueError):
            DEFAULT_SPACE.parse(bad)
    for name, text in models.SEARCHED.items():
        built = models.get(name)
        assert built.name == name and built.count_params() == models.from_description(text).count_params()
        assert DEFAULT_SPACE.describe(models.searched_params(name)) == text


def test_train_candidate_passes_hflip_and_teacher(monkeypatch):
    """train_candidate hands the candidate's hflip gene and a teacher (with alpha, temperature) to
    keras_ebnn.train.training.train; without a teacher no distillation argument is passed."""
    from keras_ebnn.train import training
    seen = []
    monkeypatch.setattr(training, "train", lambda *a, **kw: seen.append(kw))
    monkeypatch.setattr(training, "reestimate_batchnorm", lambda model, x: model)
    monkeypatch.setattr(training, "evaluate", lambda model, x, y: 0.75)
    (xtr, ytr), _ = sample_data()
    data = ((xtr[:10], ytr[:10]), (xtr[10:20], ytr[10:20]))
    teacher = object()
    assert S.train_candidate(None, dict(FIXED, hflip=True), *data, 1, teacher=teacher, alpha=0.4,
                             temperature=3.0) == 0.75
    assert seen[-1]["hflip"] is True and seen[-1]["teacher"] is teacher
    assert (seen[-1]["alpha"], seen[-1]["temperature"]) == (0.4, 3.0)
    S.train_candidate(None, FIXED, *data, 1)
    assert seen[-1]["hflip"] is False and "teacher" not in seen[-1]


def test_hflip_gene_is_off_unless_given_a_distribution():
    space = replace(SMALL, hflip=Choice((True,)))
    study = optuna.create_study()
    assert "hflip" not in SMALL.suggest(study.ask())
    params = space.suggest(study.ask())
    assert params["hflip"] is True and space.describe(params).endswith(" flip")  # (search_space.recipe_text)


def test_final_retraining_distils_from_the_teacher(tmp_path, monkeypatch):
    """search(final_teacher=...): only the final retraining gets the teacher (trials do not), and
    best.json / report.md record the distillation settings; the CLI passes --final-teacher on."""
    teachers = []
    inner = fake_train([])

    def train(model, params, train, val, epochs, **kw):
        teachers.append(kw.get("teacher"))
        assert kw.get("teacher") is None or (kw["alpha"], kw["temperature"]) == (0.3, 2.0)
        return inner(model, params, train, val, epochs, **kw)
    monkeypatch.setattr(S, "train_candidate", train)
    teacher = SMALL.build(FIXED, name="teacher")  # any Keras model stands in for the float teacher
    res = S.search(data=sample_data(), max_flash=20_000, cpu="cortex-m3", trials=2, epochs=1, val_size=200,
                   out=tmp_path, space=SMALL, seed=0, sampler="random", stream=io.StringIO(), measure="model",
                   final_epochs=1, final_teacher=teacher, distill_alpha=0.3, distill_temperature=2.0)
    assert teachers[-1] is teacher and all(t is None for t in teachers[:-1]) and len(teachers) >= 2
    assert res.final["distill"] == {"teacher": "teacher", "alpha": 0.3, "temperature": 2.0}
    assert json.loads((tmp_path / "best.json").read_text())["distill"]["alpha"] == 0.3
    assert "distilled from the float teacher `teacher` (alpha 0.3, temperature 2)" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="distill_alpha"):
        S._teacher(teacher, 1.5, 2.0)
    got = {}
    monkeypatch.setattr(S, "search", lambda *a, **kw: got.update(kw) or (_ for _ in ()).throw(KeyboardInterrupt))
    assert S.main(["--max-flash", "9000", "--final-teacher", "t.keras", "--distill-alpha", "0.5", "-o",
                   str(tmp_path / "cli")]) == 130
    assert (got["final_teacher"], got["distill_alpha"], got["distill_temperature"]) == ("t.keras", 0.5, 2.0)
