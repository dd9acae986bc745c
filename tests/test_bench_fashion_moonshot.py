"""bench/fashion_moonshot.py (issue 25): the study warm start and the BENCHMARKS sections, on made-up
results (the runs themselves train for tens of minutes; their figures are in BENCHMARKS.md)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
optuna = pytest.importorskip("optuna")

import fashion_moonshot as FM  # noqa: E402


def _m(acc, total):
    return {"keras_acc": acc, "c_acc": acc, "flash": total - 2000, "ram": 2000, "total": total}


def test_warm_start_enqueues_once(tmp_path):
    storage = str(tmp_path / "s.journal")
    assert FM.warm_start(storage, "st", [dict(FM.M15_WINNER, hflip=False), dict(FM.M15_WINNER, hflip=True)]) == 2
    from keras_ebnn.train import search as S
    study = optuna.load_study(study_name="st", storage=S.open_storage(storage))
    trial = study.ask()
    params = FM.fashion_space().suggest(trial)
    assert params["input_filters"] == 40 and params["hflip"] is False and params["conv1_padding"] == "same"
    study.tell(trial, [0.5, 100.0])
    assert FM.warm_start(storage, "st", [FM.M15_WINNER]) == 0  # the study has trials: a rerun resumes


def test_sections_say_met_or_not():
    front = [{"trial": 3, "val_accuracy": 0.86, "flash": 11000, "ram": 2700, "bytes": 13000, "arch": "c5x5:40"}]
    final = {"arch": "c5x5:40 p2; lr 1e-2", "epochs": 5, "train_minutes": 9.0, "val_accuracy": 0.88, "distill": None}
    run = {"found": _m(0.885, 13_320), "preset": _m(0.8873, 14_356), "study": {"complete": 9, "infeasible": 1,
           "failed": 0, "train_minutes": 18.0}, "final": final, "front": front, "minutes": 30.0, "enqueued": 2,
           "config": {"epochs": 2, "train_size": 6000}, "teacher": None,
           "trials": [{"trial": 3, "val_accuracy": 0.86, "bytes": 13_000}, {"trial": 4, "val_accuracy": 0.85,
                                                                           "bytes": 5_000}]}
    text = FM.fashion_section(run)
    assert "**NOT met** (88.50% exported C, 13,320 B)" in text and "What blocks 90%" in text and "-0.23 points" in text
    assert "the most accurate trial is #3 (13,000 B, 86.00% validation)" in text
    run["compare"] = [{"command": "python bench/fashion_moonshot.py --runs fashion15-compare", "rows": [
        {"trial": 0, "arch": "c5x5:40 p2 > c3x3s:32", "trial_val_accuracy": 0.78, "final": {"val_accuracy": 0.87},
         "m3": _m(0.866, 13_320), "minutes": 30.0}]}]
    assert "| #0 | `c5x5:40 p2 > c3x3s:32` | 78.00% / 87.00% | 86.60% / 86.60% | 13,320 | 30.0 min |" in FM.fashion_section(run)
    assert "retrained the same way, #0 (13,320 B) reaches 86.60% test vs the winner's 88.50%" in FM.fashion_section(run)
    run["found"] = _m(0.901, 14_000)
    assert "**met**" in FM.fashion_section(run) and "What blocks" not in FM.fashion_section(run)
    moon = {"arch": "c5x5:40 p2 > c3x3s:32; lr 1.9e-02 shift 1 scale", "teacher": None,
            "variants": [{"kind": "distill", "epochs": 15, "minutes": 40.0, "m3": _m(0.9925, 13_320),
                          "final": {"val_accuracy": 0.99, "distill": {"alpha": 0.3, "temperature": 2.0}}}]}
    text = FM.moonshot_section(moon)
    assert "distill 15 epochs: +0.12 test points" in text and "goal NOT met" in text
    assert "distilled (alpha 0.3, T 2), 15 epochs" in text
    moon["variants"][0]["m3"] = _m(0.9931, 14_990)
    assert "goal met" in FM.moonshot_section(moon)


def test_moonshot_and_compare_runs_plumbing(tmp_path, monkeypatch):
    """run_moonshot / run_compare hand the right candidate, epochs and teacher to the search's final
    step (keras_ebnn.train.search.finalize, mocked here) and measure what it saved (mocked)."""
    import argparse
    import numpy as np
    from keras_ebnn.train import search as S
    x, y = np.zeros((40, 28, 28), np.uint8), np.arange(40) % 10
    monkeypatch.setattr(S, "load_data", lambda name: ((x, y), (x[:10], y[:10])))
    calls = []

    def finalize(rows, space, train, val, test, classes, shape, budget, out, epochs, batch, name, stream, **kw):
        calls.append((rows[0]["arch"], epochs, name, kw.get("teacher"), kw.get("distill")))
        return {"keras_file": str(out / f"{name}.keras"), "val_accuracy": 0.9, "distill": kw.get("distill")}
    monkeypatch.setattr(S, "finalize", finalize)
    monkeypatch.setattr(S, "_teacher", lambda t, a, T: (None, None) if t is None else ("T", {"alpha": a, "temperature": T}))
    monkeypatch.setattr(FM, "measure", lambda name, path, dataset, work: _m(0.99, 13_000))
    args = argparse.Namespace(out=str(tmp_path), val_size=10, teacher="t.keras", variants="plain:2,distill:3",
                              compare_trials="0", final_epochs=4)
    r = FM.run_moonshot(args, str(tmp_path))
    assert [c[1:] for c in calls] == [(2, "moon_plain2", None, None), (3, "moon_distill3", "T",
                                                                         {"alpha": 0.3, "temperature": 2.0})]
    assert calls[0][0] == "c5x5:40 p2 > c3x3s:32; lr 1.9e-02 shift 1 scale" and len(r["variants"]) == 2
    storage = S.default_storage(tmp_path / "fashion15")
    FM.warm_start(storage, "bench-fashion15", [dict(FM.M15_WINNER, hflip=True)])
    study = optuna.load_study(study_name="bench-fashion15", storage=S.open_storage(storage))
    trial = study.ask()
    params = FM.fashion_space().suggest(trial)
    trial.set_user_attr("arch", FM.fashion_space().describe(params))
    study.tell(trial, [0.7, 13_320.0])
    c = FM.run_compare(args, str(tmp_path))
    assert calls[-1][:3] == (FM.fashion_space().describe(params), 4, "fashion_trial0") and calls[-1][3] is None
    assert c["rows"][0]["trial_val_accuracy"] == 0.7 and c["rows"][0]["m3"]["total"] == 13_000
