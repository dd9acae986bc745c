"""Train, ship and measure the searched presets (keras_ebnn.train.models.SEARCHED) from their search records.

    # reproduce the shipped files (writes examples/models/NAME.keras, NAME.json and the "presets"
    # section of BENCHMARKS.md); full MNIST in EBNN_DATA_DIR
    EBNN_DATA_DIR=../shared/data python bench/presets.py --models m15_search_mnist,uno_search_mnist
    # try any search candidate (its `describe` text) with the same final training, without shipping it
    EBNN_DATA_DIR=../shared/data python bench/presets.py --describe "c5x5/2:24 p2 > d128; lr 2.9e-02 shift 1" \
        --name try_uno --cpu avr --epochs 30 -o /tmp/presets

Method: the network and recipe of the search's trial (keras_ebnn.train.models.SEARCHED: the `describe`
text of the trial, parsed by keras_ebnn.train.search_space.SearchSpace.parse) trained exactly as the
search's final retraining (keras_ebnn.train.search.train_candidate: keras_ebnn.train.training's recipe with the
candidate's learning rate, shifts and output scale, batch 128, no early stop; seed 0; BN statistics
re-estimated on the 55,000 training images) for the search's --final-epochs, on the training split
without its last 5,000 images (the validation split, reported); then evaluated once on the 10,000
MNIST test images (Keras) and exported with keras_ebnn.export (reference vs Keras on the test set,
compiled C = reference bit for bit). Measured: Cortex-M3 flash + RAM by bench/accuracy_memory.py
(-Os -DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1; total = model flash + arena + stack, the input excluded);
ATmega328P (Arduino Uno): avr-gcc -Os under simavr on the first 100 test images, mean and slowest
image at 16 MHz, flash and SRAM of the program (bench/search.py measure_avr), and the `--board uno`
check of keras_ebnn.export. Writes the "presets" section of BENCHMARKS.md.
"""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, md_table, write_section

SHIPPED = ("m15_search_mnist", "uno_search_mnist")
VAL_SIZE = 5000


def uno_space():
    """The narrowed space of the worst-case Uno search (--search-uno): the family of the first Uno
    search's front (BENCHMARKS.md "Search vs uno_mnist": a stride-2 input conv, pool 2, one hidden
    dense layer, learnt output scale, lr 1e-2 to 3e-2), with the input conv's width and kernel, the
    dense width and the shifts searched."""
    from dataclasses import replace
    from keras_ebnn.train.search_space import DEFAULT_SPACE, Choice, LogUniform
    return replace(DEFAULT_SPACE, input_filters=Choice((24, 32, 40)), input_kernel=Choice((3, 5)),
                   input_stride=Choice((2,)), input_pool=Choice((2,)), conv_blocks=Choice((0,)),
                   dense_layers=Choice((1,)), dense_units=Choice((64, 128)), output_scale=Choice((True,)),
                   lr=LogUniform(1e-2, 3e-2), shift=Choice((0, 1)))


def search_uno(args):
    """A search under the Uno budget with <= 100 ms for the SLOWEST probe image (--ms-stat max) in
    uno_space(); trials only (the chosen front trial is then trained by this script's --describe)."""
    import keras_ebnn
    res = keras_ebnn.search("mnist", board="uno", max_ms=100.0, ms_stat="max", trials=args.trials, epochs=3,
                            train_size=20_000, val_size=VAL_SIZE, time_budget=args.time_budget, space=uno_space(),
                            out=args.out, study_name="uno-worst-case", sampler="tpe", seed=0, final=False,
                            measure_images=10)
    print(keras_ebnn.train.search.pareto_table(res.front, keras_ebnn.train.search.Budget(
        **res.study.user_attrs["config"]["budget"])))
    return res


def search_summary(out):
    """A Markdown table of every trial of the --search-uno study in `out` (its journal file)."""
    import optuna
    from keras_ebnn.train.search import open_storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="uno-worst-case", storage=open_storage(Path(out) / "search.journal"))
    rows = []
    for t in study.get_trials():
        u = t.user_attrs
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        state = ("interrupted (search stopped)" if t.state.name == "RUNNING" else
                 "over budget after training: " + u["violations"] if u.get("violations") else
                 "rejected before training: " + u["infeasible"] if u.get("infeasible") else t.state.name.lower())
        rows.append([t.number, f"`{u.get('arch')}`", f"{t.values[0] * 100:.2f}%" if t.values else "-",
                     f"{u['flash']:,}" if u.get("flash") else "-", f"{fmt(u.get('ms_mean'))} / {fmt(u.get('ms_max'))}",
                     state])
    return md_table(["trial", "candidate", "val. acc. (3 epochs, 20,000 images)", "flash B",
                     "ms mean / slowest of 10 probe images (trained; before training if rejected)", "state"], rows)


def train(params, name, epochs, seed, data):
    from keras_ebnn.train import training
    from keras_ebnn.train.search import train_candidate
    from keras_ebnn.train.search_space import DEFAULT_SPACE
    from keras_ebnn._tf import import_tf
    tf = import_tf()
    train_split, val, test = data
    tf.keras.utils.set_random_seed(seed)
    model = DEFAULT_SPACE.build(params, 10, name=name)
    start = time.time()
    val_acc = train_candidate(model, params, train_split, val, epochs, batch_size=128, seed=seed, patience=None,
                              bn_images=len(train_split[0]))
    minutes = (time.time() - start) / 60
    test_acc = training.evaluate(model, *test)
    plain = tf.keras.models.clone_model(model)  # without the optimizer state
    plain.set_weights(model.get_weights())
    return plain, {"val_accuracy": val_acc, "test_accuracy_keras": test_acc, "train_minutes": round(minutes, 1)}


def measure(model, path, name, cpus, test, work):
    """Exported accuracy (C = reference), Cortex-M3 memory and/or AVR time and memory."""
    import search as bench_search
    from keras_ebnn.frontdoor.exporting import export
    x, y = test
    out = {}
    res = export(model, Path(work) / f"{name}_c", name=name, verify_inputs=x, verify_labels=y)
    out.update(c_accuracy=res.accuracy, c_matches_reference=res.c_matches_reference,
               reference_vs_keras=None if res.agreement is None else res.agreement.summary())
    if "cortex-m3" in cpus:
        import accuracy_memory
        from bench.targets import cortexm
        if cortexm.available():
            m = accuracy_memory.measure(name, path, "mnist", work)
            out["m3"] = {k: m.get(k) for k in ("flash", "code", "data", "arena", "stack", "ram", "total")}
    if "avr" in cpus:
        from bench.targets import avr
        m = None
        if avr.available():
            try:
                m = bench_search.measure_avr(model, name, x[:100], work)
            except RuntimeError as exc:  # e.g. the arena and the input do not fit the 2 KB of SRAM
                out["avr_error"] = str(exc).strip().splitlines()[-1][:300]
        if m is not None:
            out["avr"] = {k: m[k] for k in ("flash", "sram", "stack", "arena", "ms", "ms_max")}
            # is the slowest image the inkiest? (keras_ebnn.train.search.probe_images probes the inkiest)
            ink = np.count_nonzero(np.asarray(x[:100]).reshape(len(x[:100]), -1), axis=1)
            out["avr"]["slowest_image_ink_rank"] = int(np.sum(ink > ink[m["slowest"]]))
        board = export(model, Path(work) / f"{name}_uno", name=name, target="arduino", board="uno", force=True,
                       check_c=False)
        out["fits_uno"] = bool(board.budget.fits)
        out["uno_budget"] = board.budget.text()
    return out


def run(name, params, epochs, seed, cpus, data, out_dir, work):
    from keras_ebnn.train.search_space import DEFAULT_SPACE
    print(f"{name}: training `{DEFAULT_SPACE.describe(params)}` for {epochs} epochs (seed {seed})", flush=True)
    model, rec = train(params, name, epochs, seed, data)
    path = Path(out_dir) / f"{name}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    rec.update(name=name, describe=DEFAULT_SPACE.describe(params), epochs=epochs, seed=seed,
               file=str(path.relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path))
    rec.update(measure(model, path, name, cpus, data[2], work))
    print(json.dumps(rec, indent=1, default=str), flush=True)
    return rec


def preset_table(recs):
    rows = []
    for r in recs:
        m3, a = r.get("m3") or {}, r.get("avr") or {}
        rows.append([f"`{r['name']}`", f"`{r['describe']}`", r["epochs"], f"{r['train_minutes']}" if r.get('train_minutes') is not None else "- (see examples/models/README.md)",
                     f"{r['val_accuracy'] * 100:.2f}%", f"{r['test_accuracy_keras'] * 100:.2f}% / "
                     f"{(r['c_accuracy'] or 0) * 100:.2f}%",
                     f"{m3['total']:,}" if m3.get("total") else "-",
                     f"{a['flash']:,} / {a['sram']:,}" if a else "-",
                     f"{a['ms']:.1f} / {a['ms_max']:.1f}" if a else "-",
                     ("yes" if r["fits_uno"] else "no") if "fits_uno" in r else "-"])
    table = md_table(["preset", "architecture and recipe (search trial)", "epochs", "train min", "val. acc.",
                      "test acc. Keras / C", "Cortex-M3 total B", "Uno flash / SRAM B", "Uno ms (mean / slowest "
                      "of 100)", "fits `--board uno`"], rows)
    return table


def section(recs, command, tried=()):
    method = __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " ")
    text = "## Searched presets\n\n" + method + "\n\n" + preset_table(recs)
    if tried:
        text += ("\n\nCandidates of the worst-case Uno search (below) trained with the same final recipe and measured "
                 "the same way, not shipped (none meets >= 98.5% test accuracy); records in bench/presets_tried/, "
                 "each made by its own command (`command` in the record):\n\n" + preset_table(tried))
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(SHIPPED), help="searched presets (keras_ebnn.train.models.SEARCHED)")
    ap.add_argument("--describe", default=None, help="train this search candidate instead (with --name)")
    ap.add_argument("--name", default="candidate")
    ap.add_argument("--cpu", default="cortex-m3,avr", help="measure on: cortex-m3, avr (comma-separated)")
    ap.add_argument("--epochs", type=int, default=None, help="final-training epochs (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default=None, help="folder for NAME.keras (default examples/models)")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--section-only", action="store_true", help="only write the BENCHMARKS section from the "
                    "shipped NAME.json records (and --search-out)")
    ap.add_argument("--measure-only", action="store_true", help="measure the shipped NAME.keras of --models again "
                    "(no training) and update NAME.json's measurements")
    ap.add_argument("--search-uno", action="store_true", help="run the worst-case Uno search (uno_space) into -o")
    ap.add_argument("--trials", type=int, default=40, help="--search-uno: trained trials")
    ap.add_argument("--time-budget", type=float, default=25, help="--search-uno: minutes of trials")
    ap.add_argument("--tried", default=None, help="comma-separated NAME.json records of candidates trained with "
                    "--describe (not shipped) to list in the BENCHMARKS section")
    ap.add_argument("--search-out", default=None, help="summarise the --search-uno study of this folder in the "
                    "BENCHMARKS section")
    args = ap.parse_args(argv)
    print(__doc__)
    if args.search_uno:
        if not args.out:
            ap.error("--search-uno needs -o OUT")
        search_uno(args)
        return 0
    from keras_ebnn.train import models
    from keras_ebnn.train.search import load_data, split_validation
    from keras_ebnn.train.search_space import DEFAULT_SPACE
    (xtr, ytr), test = load_data("mnist")
    train_split, val = split_validation(xtr, ytr, VAL_SIZE)
    data = (train_split, val, test)
    cpus = args.cpu.split(",")
    out_dir = Path(args.out) if args.out else ROOT / "examples" / "models"
    if args.describe:
        jobs = [(args.name, DEFAULT_SPACE.parse(args.describe), args.epochs or 20)]
    else:
        jobs = [(n, models.searched_params(n), args.epochs or models.SEARCHED_EPOCHS[n])
                for n in args.models.split(",")]
    recs = []
    if args.section_only:
        jobs = []
    if args.measure_only:
        from keras_ebnn.frontend.lowering import load_model
        with tempfile.TemporaryDirectory() as work:
            for name, _, _ in jobs:
                path = out_dir / f"{name}.keras"
                model = load_model(path)
                if (out_dir / f"{name}.json").is_file():
                    rec = json.loads((out_dir / f"{name}.json").read_text())
                else:  # the training run stopped before its record: the accuracies again from the file
                    from keras_ebnn.train import training
                    rec = {"name": name, "describe": models.SEARCHED[name], "epochs": models.SEARCHED_EPOCHS[name],
                           "seed": args.seed, "val_accuracy": training.evaluate(model, *val),
                           "test_accuracy_keras": training.evaluate(model, *test), "train_minutes": None,
                           "command": f"EBNN_DATA_DIR=../shared/data python bench/presets.py --models {name}"}
                rec["file"] = str(path.relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)
                rec.update(measure(model, path, name, cpus, test, work))
                print(json.dumps(rec, indent=1, default=str), flush=True)
                (out_dir / f"{name}.json").write_text(json.dumps(rec, indent=1, default=str) + "\n")
                recs.append(rec)
    with tempfile.TemporaryDirectory() as work:
        for name, params, epochs in ([] if args.measure_only else jobs):
            rec = run(name, params, epochs, args.seed, cpus, data, out_dir, work)
            rec["command"] = "EBNN_DATA_DIR=../shared/data python bench/presets.py " + " ".join(
                argv if argv is not None else sys.argv[1:])
            (out_dir / f"{name}.json").write_text(json.dumps(rec, indent=1, default=str) + "\n")
            recs.append(rec)
    if not args.no_write and not args.describe:
        shipped = [json.loads((ROOT / "examples" / "models" / f"{n}.json").read_text()) for n in SHIPPED
                   if (ROOT / "examples" / "models" / f"{n}.json").is_file()]
        tried = [json.loads(Path(p).read_text()) for p in args.tried.split(",")] if args.tried else []
        text = section(shipped, "", tried)
        if args.search_out:
            text += ("\n\nThe worst-case Uno search (`python bench/presets.py --search-uno --trials 40 --time-budget 25 "
                     f"-o {args.search_out}`: keras_ebnn.search with the Uno board, <= 100 ms for the slowest of 10 "
                     "probe images, in `uno_space()`), every trial:\n\n" + search_summary(args.search_out))
        print(text)
        write_section("presets", text, "EBNN_DATA_DIR=../shared/data python bench/presets.py --models NAME "
                      "(each preset's own command: examples/models/NAME.json); this section: python bench/presets.py "
                      + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
