"""keras_ebnn.search against the hand-made presets, and the fit of its speed model.

    # the issue's two searches (full MNIST; each within ~90 minutes on the 2-core machine: the
    # trials stop after --time-budget minutes, then the final retraining runs: measured in a short
    # run, one epoch on 55,000 images takes ~0.4 min for an Uno-sized candidate, ~1.5 min at m15 size)
    EBNN_DATA_DIR=../shared/data python bench/search.py --runs uno --trials 200 --epochs 5 \
        --train-size 30000 --time-budget 55 --final-epochs 30 --final-candidates 3 -o /tmp/bench_search_uno3
    EBNN_DATA_DIR=../shared/data python bench/search.py --runs m15 --trials 200 --epochs 3 \
        --train-size 20000 --time-budget 50 --final-epochs 15 -o /tmp/bench_search_m15
    # a short end-to-end check of the same command (minutes; figures not meaningful)
    EBNN_DATA_DIR=../shared/data python bench/search.py --quick -o /tmp/bench_search_quick --no-write
    # the speed model of keras_ebnn.search (SPEED_MODELS): emulator counts of random candidates
    python bench/search.py --fit-cost [--fit-candidates 24]

Runs (--runs):
  uno: budget of the Arduino Uno (keras_ebnn.planning.boards "uno": 32,256 B flash, 2,048 B SRAM
       incl. the 784 B input and the stack) and <= 100 ms on the ATmega328P at 16 MHz, against
       uno_mnist;
  m15: <= 15,000 B flash + RAM (input excluded) on Cortex-M3, against m15_mnist.
Method: keras_ebnn.search with the given settings (trials scored on the last --val-size training
images; candidates over the budget rejected before training, measured in simavr / QEMU when those
are installed; the most accurate trial of the Pareto front retrained for --final-epochs and
evaluated once on the 10,000 test images); then the found model and the preset are measured exactly, in this same run:
test accuracy (Keras and exported C), and on the run's CPU: uno: avr-gcc -Os build run under simavr
on 100 test images (flash = the program's text + data, driver included; SRAM = input buffer + arena +
stack high-water mark; ms = mean / slowest image at 16 MHz); m15: bench/accuracy_memory.py's
Cortex-M3 measurement (-Os -DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1; total = model flash + arena + stack).
The search's storage file (OUT/RUN/search.journal) is summarised, not copied: trial counts, time,
the Pareto front. Writes the "search-uno" / "search-m15" sections of BENCHMARKS.md.

--fit-cost: builds random candidates of keras_ebnn.train.search_space.DEFAULT_SPACE (random weights, BN
statistics at their initial values) and the shipped models, counts ATmega328P cycles (simavr,
avr-gcc -Os) and Cortex-M3 / M0+ instructions (QEMU, arm-none-eabi-gcc -O2), each the mean over 10
MNIST sample images, fits the linear model of keras_ebnn.train.search.speed_features to the random
candidates (least squares on relative error, non-negative coefficients) and prints the coefficients
and the relative error: on the fitted candidates, leave-one-out, and on the shipped (trained) models.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, MODELS, md_table, write_section

RUNS = {
    "uno": {"board": "uno", "max_ms": 100.0, "preset": "uno_mnist", "cpu": "avr"},
    "m15": {"max_total": 15_000, "cpu": "cortex-m3", "preset": "m15_mnist"},
}
QUICK = dict(trials=3, epochs=1, train_size=2000, final_epochs=1, val_size=1000)


# ------------------------------------------------------------------------------------------------
# exact measurements


def measure_avr(model, name, x, work):
    """simavr figures of a Keras model exported as C: flash, SRAM, mean / slowest ms, on images x."""
    from bench.targets import avr
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.frontend.lowering import lower
    lowered = lower(model, name)
    out = Path(work) / f"{name}_avr_c"
    export_c(lowered, out, name)
    r = avr.build_and_run(out, name, x, lowered.num_classes, workdir=Path(work) / f"avr_{name}")
    arena = r["symbols"].get(f"{name}_arena", 0)
    return {"flash": r["flash_bytes"], "sram": lowered.input.length + arena + r["stack_high_water_bytes"],
            "stack": r["stack_high_water_bytes"], "arena": arena, "ms": r["ms_per_inference_16mhz"],
            "ms_max": max(r["cycles_per_image"]) / 16e3, "cycles": r["cycles_per_inference"],
            "slowest": int(np.argmax(r["cycles_per_image"]))}


def measure_m3(path, name, dataset, work):
    import accuracy_memory
    return accuracy_memory.measure(name, path, dataset, work)


def keras_and_c_accuracy(model, name, x, y, work):
    from keras_ebnn.frontdoor import host
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.frontend.lowering import lower
    lowered = lower(model, name)
    out = Path(work) / f"{name}_host_c"
    export_c(lowered, out, name)
    k = np.argmax(model.predict(x.astype(np.float32), batch_size=1000, verbose=0), axis=1)
    c, _ = host.predict_c(lowered, out, name, x)
    ref = graph_reference.run(lowered, x)["classes"]
    assert np.array_equal(c, ref), f"{name}: C and reference executor disagree"
    return float(np.mean(k == y)), float(np.mean(c == y))


def journal_summary(study):
    from optuna.trial import TrialState
    ts = study.get_trials(deepcopy=False)
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    first = min((t.datetime_start for t in ts if t.datetime_start), default=None)
    last = max((t.datetime_complete for t in ts if t.datetime_complete), default=None)
    return {"trials": len(ts), "complete": len(done), "infeasible": sum(t.state == TrialState.PRUNED for t in ts),
            "failed": sum(t.state == TrialState.FAIL for t in ts),
            "duplicates": sum("duplicate_of" in t.user_attrs for t in done),
            "train_minutes": round(sum(t.user_attrs.get("train_seconds") or 0 for t in done) / 60, 1),
            "wall_minutes": round((last - first).total_seconds() / 60, 1) if first and last else None}


def run_one(key, args, work):
    import keras_ebnn
    from keras_ebnn.train import datasets
    from keras_ebnn.frontend.lowering import load_model
    spec = RUNS[key]
    cfg = dict(trials=args.trials, epochs=args.epochs, train_size=args.train_size, final_epochs=args.final_epochs,
               val_size=args.val_size, ms_stat=args.ms_stat, measure_images=args.measure_images)
    if args.quick:
        cfg.update(QUICK)
    out = Path(args.out) / key
    t0 = time.time()
    res = keras_ebnn.search("mnist", board=spec.get("board"), cpu=spec["cpu"], max_total=spec.get("max_total"),
                            max_ms=spec.get("max_ms"), time_budget=args.time_budget, out=out, study_name=f"bench-{key}",
                            sampler=args.sampler, seed=args.seed, name=f"search_{key}",
                            final_candidates=args.final_candidates, **cfg)
    minutes = (time.time() - t0) / 60
    (xte, yte) = datasets.load("mnist", split="test")
    preset = spec["preset"]
    preset_path = ROOT / MODELS[preset][0]
    preset_model = load_model(preset_path)
    found = load_model(res.final["keras_file"])
    row = {"run": key, "minutes": round(minutes, 1), "study": journal_summary(res.study), "final": res.final,
           "front": res.front, "config": cfg}
    for label, model, path in (("found", found, res.final["keras_file"]), ("preset", preset_model, preset_path)):
        name = f"search_{key}" if label == "found" else preset
        k_acc, c_acc = keras_and_c_accuracy(model, name, xte, yte, work)
        m = {"keras_acc": k_acc, "c_acc": c_acc}
        if spec["cpu"] == "avr":
            from bench.targets import avr
            if avr.available():
                m.update(measure_avr(model, name, xte[:100], work))
        else:
            from bench.targets import cortexm
            if cortexm.available():
                mm = measure_m3(Path(path), name, "mnist", work)
                m.update({k: mm.get(k) for k in ("flash", "arena", "stack", "ram", "total")})
        row[label] = m
    print(json.dumps({k: v for k, v in row.items() if k != "front"}, default=str, indent=1))
    return row


def section(r):
    """The BENCHMARKS.md section of one run."""
    parts = [f"## Search (`keras_ebnn.search`) vs `{RUNS[r['run']]['preset']}`\n",
             __doc__.split("Method:")[1].split("--fit-cost:")[0].strip().replace("\n", " ") + "\n"]
    f, p, s = r["found"], r["preset"], r["study"]
    budget = ("Uno: 32,256 B flash, 2,048 B SRAM incl. input and stack, <= 100 ms on the ATmega328P"
              if r["run"] == "uno" else "<= 15,000 B flash + RAM (input excluded), Cortex-M3")
    parts.append(f"### {r['run']}: {budget}\n")
    parts.append(f"Search: {s['complete']} trained trials ({s['duplicates']} duplicates of an earlier "
                 f"candidate, not retrained), {s['infeasible']} candidates rejected before training, "
                 f"{s['failed']} failed; {s['train_minutes']} min of trial training, {r['minutes']} min for the "
                 f"whole command incl. the final retraining ({r['final']['epochs']} epochs, "
                 f"{r['final']['train_minutes']} min), checked by {r['final']['cost'].get('source', 'model')}. "
                 f"Settings: {r['config']}.\n")
    if r["run"] == "uno":
        head = ["model", "architecture", "test acc. Keras / C", "flash B (program)", "SRAM B (input + arena + stack)",
                "ms @16 MHz (mean / slowest)"]
        cells = lambda m: [f"{m['keras_acc'] * 100:.2f}% / {m['c_acc'] * 100:.2f}%", f"{m.get('flash', '-'):,}",
                           f"{m.get('sram', '-'):,}",
                           f"{m['ms']:.1f} / {m['ms_max']:.1f}" if "ms" in m else "-"]
    else:
        head = ["model", "architecture", "test acc. Keras / C", "flash B", "RAM B (arena + stack)", "total B"]
        cells = lambda m: [f"{m['keras_acc'] * 100:.2f}% / {m['c_acc'] * 100:.2f}%", f"{m.get('flash', '-'):,}",
                           f"{m.get('ram', '-'):,}", f"{m.get('total', '-'):,}"]
    parts.append(md_table(head, [["found (search)", f"`{r['final']['arch']}`"] + cells(f),
                                 [RUNS[r['run']]['preset'] + " (preset)", "hand-made"] + cells(p)]) + "\n")
    better = [k for k in (("flash", "sram", "ms") if r["run"] == "uno" else ("flash", "ram", "total"))
              if k in f and k in p and f[k] < p[k]]
    parts.append(f"Goal: test accuracy >= the preset's ({p['keras_acc'] * 100:.2f}%): "
                 f"{'met' if f['keras_acc'] >= p['keras_acc'] else 'NOT met'} ({f['keras_acc'] * 100:.2f}%); "
                 f"smaller or faster than the preset in: {', '.join(better) or 'none'}.\n")
    cands = r["final"].get("candidates") or []
    if len(cands) > 1:
        parts.append(f"Final choice (--final-candidates {len(cands)}): the {len(cands)} most accurate front trials, "
                     "each retrained, validation accuracy after retraining: "
                     + ", ".join(f"#{c['trial']} {c['val_accuracy'] * 100:.2f}%" for c in cands)
                     + f"; #{r['final']['trial']} kept, the only one evaluated on the test set.\n")
    stat = r["config"].get("ms_stat", "mean")  # runs before --ms-stat budgeted the mean
    if r["run"] == "uno" and f.get("ms_max") is not None and f["ms_max"] > RUNS["uno"]["max_ms"]:
        what = ("the mean time over its probe images" if stat == "mean" else
                f"the slowest of its {r['config'].get('measure_images')} probe (validation) images")
        parts.append(f"Time budget: the search budgeted {what} (here {f['ms']:.1f} ms mean over 100 test images); "
                     f"the slowest of those 100 test images takes {f['ms_max']:.1f} ms (the kernels' time depends "
                     f"on the image), over the {RUNS['uno']['max_ms']:g} ms budget.\n")
    front = md_table(["trial", "val. acc.", "flash B", "RAM B (incl. input)", "bytes (input excl.)", "ms", "candidate"],
                     [[x["trial"], f"{x['val_accuracy'] * 100:.2f}%", f"{x['flash']:,}", f"{x['ram']:,}",
                       f"{x['bytes']:,}", f"{x['ms']:.1f}", f"`{x['arch']}`"] for x in r["front"]])
    parts.append("Pareto front of the search (validation accuracy; flash, RAM and ms as the search checked them: "
                 "measured in the emulator on 10 validation images when `source` was `emulator`, else "
                 "the cost model):\n\n" + front + "\n")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# speed-model fit


def _candidates(n, seed):
    import optuna
    from keras_ebnn.train.search import estimate
    from keras_ebnn.train.search_space import DEFAULT_SPACE
    from keras_ebnn.frontend.lowering import lower
    from keras_ebnn import import_tf
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import_tf().keras.utils.set_random_seed(seed)  # the random weights (hence the data-dependent counts)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    while len(out) < n:
        trial = study.ask()
        params = DEFAULT_SPACE.suggest(trial)
        study.tell(trial, 0.0)
        try:
            model = DEFAULT_SPACE.build(params, name=f"cand{len(out)}")
            lowered = lower(model, f"cand{len(out)}")
        except Exception:
            continue
        if estimate(lowered, "cortex-m3")["macs"] > 15e6:
            continue
        out.append((DEFAULT_SPACE.describe(params), lowered))
    return out


def fit_cost(args):
    from bench.targets import avr, cortexm
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.frontend.lowering import load_model, lower
    from keras_ebnn.train.search import SPEED_FEATURES, estimate, speed_features
    x = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"].reshape(-1, 28, 28, 1)[:10]
    items = [(d, low, False) for d, low in _candidates(args.fit_candidates, args.seed or 0)]
    for name in ("paper_mnist", "tiny_mnist", "uno_mnist", "m15_mnist"):
        items.append((name, lower(load_model(ROOT / MODELS[name][0]), name), True))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for i, (desc, lowered, shipped) in enumerate(items):
            name = lowered.name
            out = Path(work) / name
            export_c(lowered, out, name)
            row = {"name": name, "desc": desc, "shipped": shipped, "features": speed_features(lowered)}
            est = estimate(lowered, "avr")
            if avr.available() and est["flash"] < 30_000 and est["ram"] < 1_900:
                try:
                    row["avr"] = avr.build_and_run(out, name, x, lowered.num_classes,
                                                   workdir=f"{work}/avr_{name}")["cycles_per_inference"]
                except RuntimeError as exc:
                    print(f"{name}: AVR failed: {str(exc)[:200]}")
            if cortexm.available():
                for cpu in ("cortex-m3", "cortex-m0plus"):
                    row[cpu] = cortexm.build_and_run(out, name, x, lowered.num_classes, cpu=cpu, opt="-O2",
                                                     workdir=f"{work}/{cpu}_{name}")["instructions_per_inference"]
            print(i, json.dumps(row, default=float), flush=True)
            rows.append(row)
    if args.fit_log:
        Path(args.fit_log).write_text(json.dumps(rows, default=float, indent=1))
    report = {}
    for cpu in ("avr", "cortex-m3", "cortex-m0plus"):
        train = [r for r in rows if cpu in r and not r["shipped"]]
        held = [r for r in rows if cpu in r and r["shipped"]]
        if len(train) < len(SPEED_FEATURES) + 2:
            continue
        coef = _nnls_rel([[r["features"][f] for f in SPEED_FEATURES] for r in train], [r[cpu] for r in train])
        pred = lambda r, c=coef: sum(c[j] * r["features"][f] for j, f in enumerate(SPEED_FEATURES))
        err = [pred(r) / r[cpu] - 1 for r in train]
        loo = []
        for k in range(len(train)):
            rest = train[:k] + train[k + 1:]
            c = _nnls_rel([[r["features"][f] for f in SPEED_FEATURES] for r in rest], [r[cpu] for r in rest])
            loo.append(pred(train[k], c) / train[k][cpu] - 1)
        held_err = {r["name"]: round(pred(r) / r[cpu] - 1, 3) for r in held}
        report[cpu] = {"coef": {f: round(float(coef[j]), 4) for j, f in enumerate(SPEED_FEATURES)},
                       "n": len(train), "max_abs_rel_err": round(float(np.max(np.abs(err))), 3),
                       "rms_rel_err": round(float(np.sqrt(np.mean(np.square(err)))), 3),
                       "loo_max_abs_rel_err": round(float(np.max(np.abs(loo))), 3),
                       "shipped_rel_err": held_err}
    print(json.dumps(report, indent=1))
    if not args.no_write and report:
        rows_md = [[cpu, r["n"], f"{r['rms_rel_err'] * 100:.0f}%", f"{r['max_abs_rel_err'] * 100:.0f}%",
                    f"{r['loo_max_abs_rel_err'] * 100:.0f}%",
                    ", ".join(f"{k} {v * 100:+.0f}%" for k, v in r["shipped_rel_err"].items())]
                   for cpu, r in report.items()]
        text = ("## Speed model of `keras_ebnn.search`\n\n" + __doc__.split("--fit-cost:")[1].strip().replace("\n", " ")
                + " The search uses the model only as a pre-filter (a candidate whose predicted count divided "
                "by 1 + the largest leave-one-out error is over the budget is rejected; keras_ebnn.search."
                "SPEED_MODEL_ERROR) and as the fallback when the emulators are missing; with them it measures "
                "every remaining candidate exactly.\n\n"
                + md_table(["CPU", "random candidates", "RMS error", "max error", "leave-one-out max error",
                            "error on the shipped (trained) models"], rows_md))
        write_section("search-speed-model", text, "python bench/search.py --fit-cost --fit-candidates "
                      f"{args.fit_candidates} --seed {args.seed or 0}")
    return report


def _nnls_rel(a, y):
    """Non-negative least squares on relative error: minimise sum ((a @ c) / y - 1)^2, c >= 0
    (features with a negative coefficient are dropped and the rest refitted)."""
    a = np.asarray(a, float) / np.asarray(y, float)[:, None]
    b = np.ones(len(y))
    active = list(range(a.shape[1]))
    while True:
        c = np.zeros(a.shape[1])
        sol = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
        c[active] = sol
        neg = [active[j] for j in range(len(active)) if sol[j] < 0]
        if not neg:
            return c
        active = [j for j in active if j not in neg]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="uno,m15")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=20_000)
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--final-epochs", type=int, default=20)
    ap.add_argument("--final-candidates", type=int, default=1,
                    help="retrain the K most accurate front trials, keep the best on validation")
    ap.add_argument("--time-budget", type=float, default=None, help="minutes of trials per run")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--ms-stat", default="max", choices=("max", "mean"),
                    help="what the uno run's 100 ms bounds: the slowest probe image (default) or their mean")
    ap.add_argument("--measure-images", type=int, default=10, help="probe images of the search's emulator")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help=f"tiny settings to check the command: {QUICK}")
    ap.add_argument("-o", "--out", default=None)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--fit-cost", action="store_true")
    ap.add_argument("--fit-candidates", type=int, default=24)
    ap.add_argument("--fit-log", default=None, help="write the fit's measurements (JSON) here")
    args = ap.parse_args(argv)
    if args.fit_cost:
        fit_cost(args)
        return 0
    if args.out is None:
        ap.error("-o OUT is required for the search runs")
    import sys
    command = "EBNN_DATA_DIR=../shared/data python bench/search.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as work:
        for key in args.runs.split(","):
            text = section(run_one(key, args, work))
            print(text)
            if not args.no_write and not args.quick:
                write_section(f"search-{key}", text, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
