"""Accuracy vs memory of the shipped models, on the full MNIST / Fashion-MNIST test sets.

    EBNN_DATA_DIR=../shared/data python bench/accuracy_memory.py [--models a,b] [--no-write]

Method: Keras accuracy from model.predict on the 10,000 test images; exported accuracy from the C
export compiled with the host gcc -O2 and run on the same images (its classes must equal the NumPy
reference executor's); memory from the Cortex-M3 ELF built for size (arm-none-eabi-gcc -Os
-DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1, the runtime's small-stack options; our bare-metal driver):
flash = what the model adds to the program: the ELF's flash (text + data) minus that of the same driver
built without the NAME_predict call (the linker then drops the model, the runtime kernels and the
library routines only they use; the size change of the driver's own
functions is not counted); code = that minus the model's const objects
(symbol sizes), so it includes the runtime, predict and those library routines; RAM = the activation
arena (symbol size) + the stack NAME_predict uses, measured by painting RAM and running 10 inferences
under QEMU (minus what a build without the predict call reaches). The uint8 input buffer is listed separately and not counted. Writes the "accuracy"
section of BENCHMARKS.md and bench/accuracy_memory.png.
"""
import argparse
import tempfile

import numpy as np

from common import ROOT, available_models, load_export, md_table, test_set, write_section

REFERENCE_POINTS = [  # (label, accuracy %, KB) from ../shared/REFERENCES.md; memory = weights only
    ("eBNN paper (claim, 15 KB total)", 95.0, 15.0),
    ("FINN/Brevitas MLP 3x64 (weights)", 93.17, 7.2 * 1.024),
    ("FINN/Brevitas MLP 3x256 (weights)", 97.81, 40.8 * 1.024),
    ("Larq tutorial BNN (weights)", 98.0, 13.2 * 1.024),
    ("BitNetMCU (1-bit w, 8-bit act)", 98.4, 12.0),
]


LABEL_OFFSETS = {"m15_mnist": (-8, 8)}  # plot labels (points) moved off a crowded spot

SMALL = ["-DEBNN_CHUNK=8", "-DEBNN_LOW_STACK=1"]  # the runtime's size-over-speed options


def measure(name, path, dataset, work, opt="-Os", flags=SMALL):
    from bench.targets import cortexm
    from keras_ebnn.frontdoor import host
    from keras_ebnn.ir import graph_reference
    model, lowered, out = load_export(name, path, work)
    x, y = test_set(dataset)
    keras_cls = np.argmax(model.predict(x.astype(np.float32), batch_size=1000, verbose=0), axis=1)
    c_cls, _ = host.predict_c(lowered, out, name, x)
    ref_cls = graph_reference.run(lowered, x)["classes"]
    assert np.array_equal(c_cls, ref_cls), f"{name}: C and reference executor disagree"
    row = {"model": name, "dataset": dataset, "keras_acc": float(np.mean(keras_cls == y)),
           "c_acc": float(np.mean(c_cls == y)), "differ": int(np.sum(c_cls != keras_cls)),
           "input_bytes": lowered.input.length * (1 if lowered.input.dtype == np.uint8 else 4)}
    if cortexm.available():
        r = cortexm.build_and_run(out, name, x[:10], lowered.num_classes, cpu="cortex-m3", opt=opt,
                                   workdir=f"{work}/m3_{name}", flags=flags)
        data = sum(v for k, v in r["symbols"].items() if k.startswith(f"{name}_b"))
        row.update({"weights": sum(v for k, v in r["symbols"].items() if k.startswith(f"{name}_b") and k.endswith("_w")),
                    "data": data, "code": r["code_bytes"], "helpers": sum(r["libgcc_helpers"].values()),
                    "arena": r["symbols"][f"{name}_arena"], "stack": r["stack_bytes"]})
        row["flash"] = r["model_flash"]
        print(f"  {name}: library routines in the code figure: "
              + ", ".join(f"{k} {v} B" for k, v in r["libgcc_helpers"].items()), flush=True)
        row["ram"] = row["arena"] + row["stack"]
        row["total"] = row["flash"] + row["ram"]
    return row


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    accs = []
    for ds, marker in (("mnist", "o"), ("fashion_mnist", "s")):
        pts = [r for r in rows if r["dataset"] == ds and "total" in r]
        ax.scatter([r["total"] / 1024 for r in pts], [r["c_acc"] * 100 for r in pts], marker=marker,
                   s=50, label=f"keras-ebnn ({ds}, total flash+RAM on Cortex-M3)", zorder=3)
        for r in pts:
            accs.append(r["c_acc"] * 100)
            ax.annotate(r["model"], (r["total"] / 1024, r["c_acc"] * 100), fontsize=7,
                        xytext=LABEL_OFFSETS.get(r["model"], (5, -11)), textcoords="offset points")
    # reference points: a number beside the mark, the name in the legend (their labels would overlap)
    for i, (label, acc, kb) in enumerate(REFERENCE_POINTS, 1):
        accs.append(acc)
        ax.scatter([kb], [acc], marker="x", color="gray", label=f"{i}: {label}")
        ax.annotate(str(i), (kb, acc), fontsize=7, color="gray", xytext=(3, 3), textcoords="offset points")
    ax.axvline(15, color="red", lw=0.7, ls="--")
    ax.set_xscale("log")
    ticks = [3, 5, 10, 15, 20, 40]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(min(accs) - 4.5, max(accs) + 0.8)  # room for the legend below the points
    ax.set_xlabel("memory, KB (log scale; reference points: as published, mostly weights only)")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("Accuracy vs memory (red line: 15 KB)")
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated subset of the shipped models")
    ap.add_argument("--no-write", action="store_true",
                    help="print only, do not touch BENCHMARKS.md or bench/accuracy_memory.png")
    ap.add_argument("--opt", default="-Os", help="optimisation level of the Cortex-M3 build (default -Os)")
    args = ap.parse_args(argv)
    print(__doc__)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, (path, dataset) in available_models(args.models and args.models.split(",")).items():
            r = measure(name, path, dataset, work, args.opt)
            print(r)
            rows.append(r)
    header = ["model", "dataset", "Keras acc", "C acc", "classes differ", "weights B", "model data B",
              "code B", "of which library B", "flash B", "arena B", "stack B", "RAM B", "total B", "input B (separate)"]
    table = md_table(header, [[r["model"], r["dataset"], f"{r['keras_acc'] * 100:.2f}%", f"{r['c_acc'] * 100:.2f}%",
                               r["differ"], r.get("weights", "-"), r.get("data", "-"), r.get("code", "-"),
                               r.get("helpers", "-"),
                               r.get("flash", "-"), r.get("arena", "-"), r.get("stack", "-"), r.get("ram", "-"),
                               r.get("total", "-"), r["input_bytes"]] for r in rows])
    png = None if args.no_write else plot(rows, ROOT / "bench" / "accuracy_memory.png")
    text = "## Accuracy vs memory\n\n" + __doc__.split("Method:")[1].split("Writes")[0].strip().replace("\n", " ") \
        + "\n\n" + table + ("\n\n![accuracy vs memory](bench/accuracy_memory.png)" if png else "")
    print(table)
    if not args.no_write:
        write_section("accuracy", text, "EBNN_DATA_DIR=../shared/data python bench/accuracy_memory.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
