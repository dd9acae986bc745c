"""`keras_ebnn.search`: find the most accurate eBNN that fits a given chip, with Optuna.

    keras-ebnn-search --dataset mnist --board uno --max-ms 100 --trials 40 --epochs 3 -o runs/uno
    python -m keras_ebnn.train.search --dataset mnist --max-total 15000 --cpu cortex-m3 --trials 40 -o runs/m15

Time budget (--max-ms, --ms-stat): the kernels' time depends on the image (all-zero input windows
are skipped, a pooling window stops at its first 1 bit), so a mean can hide slow images (a search
budgeting the mean found an Uno model at 88 ms mean whose slowest of 100 test images took 119 ms).
By default (--ms-stat max) the budget bounds EVERY image: the emulator runs --measure-images
validation images one by one (half the first ones, half those with the most ink, which cost the
first layer most) and the slowest decides; --ms-stat mean bounds their mean instead. The final model
is also run on --final-measure-images test images (default 100): report.md gives the mean and the
slowest image. The cost model (--measure model, no emulator) predicts one coarse figure for both.

What one search does:
  1. Every trial asks Optuna for a candidate from the search space (keras_ebnn.train.search_space), builds
     it with random weights, lowers it and plans its memory (milliseconds), and checks its flash,
     RAM and speed on the target CPU: with the cost model (`estimate`), or, when the emulators are
     installed (source checkout), exactly (`measure`: its C export built and run in simavr / QEMU,
     a few seconds) after the plan's exact lower bounds. A candidate over a budget (or whose
     geometry does not work) is never trained: the trial ends PRUNED with the user attribute
     "infeasible" saying why, so the study counts it (`SearchResult.infeasible`).
  2. A feasible candidate is trained (`train_candidate`: the keras_ebnn.train.training recipe with the
     candidate's learning rate, shifts, output scale and BN re-estimation) on the training split and
     scored on a VALIDATION split (the last `val_size` training images); the test set is not touched.
     Objectives: maximise validation accuracy, minimise bytes (flash + RAM, the input buffer
     excluded); with a speed budget or `minimize_ms`, also minimise the estimated ms.
  3. The Pareto front of the study is written as a table (pareto.md) and a plot (pareto.png, when
     matplotlib is installed). The most accurate trial of the front (ties: fewer bytes) is retrained
     from scratch for `final_epochs` on the whole training split, evaluated ONCE on the test set,
     saved as best.keras and exported to C with keras_ebnn.export (reference vs Keras compared on the
     test set; the compiled C vs the reference bit for bit when a host C compiler exists).
     With `final_teacher` (--final-teacher T.keras, e.g. a float keras_ebnn.train.training.teacher_model
     trained on the same split) that retraining is distilled from it (the trials are not).

Engine: Optuna. Sampler: its multi-objective TPE sampler by default (few, expensive trials), NSGA-II
with `sampler="nsga2"`. Optuna's pruners do not support multi-objective studies (Trial.report /
should_prune raise for them), so short trials are made short by the budget pre-check (no training of
infeasible candidates) and an epoch-level early stop (`patience`), not by a pruner.

Storage: a journal file OUT/search.journal by default (Optuna's JournalStorage; several processes on
one machine may share it). Every finished trial is written at once, so after Ctrl-C or a crash the
same command resumes the study (load_if_exists) with every finished trial kept; the interrupted
trial is marked FAIL (or, after a crash, found stale: its process is gone) and its candidate is
retried first. `--trials N` is the number of TRAINED (complete) trials the study should reach;
infeasible candidates do not count (at most `max_infeasible` of them).

Scale-out: run the same command on several processes or machines with one RDB URL, e.g.
    keras-ebnn-search ... --storage postgresql://user:pw@dbhost/ebnn --study uno1 --no-final
on every worker (needs SQLAlchemy and a driver: psycopg2-binary, or psycopg 3 with
postgresql+psycopg://), then once without --no-final: the study already holds its trials, so that run
only writes the Pareto front and retrains, tests and exports the best model. Workers draw different
random candidates (the sampler is seeded per process unless `seed` is given), share every result
through the database, and RDB storages run Optuna's heartbeat (a crashed worker's trial is failed
after `grace_period` and retried once).

Cost model (`estimate`, the fallback and pre-filter of `measure`), for the CPU of the budget (`CPUS`):
  flash = model data (exact, exporters/c.py memory_plan) + runtime code (the plan's Cortex-M3 -O2
          estimate x the CPU's `code_scale`, which bounds the code measured for the shipped models)
  RAM   = activation arena (exact) + stack (the plan's bound) + the input buffer (exact)
  bytes = flash + arena + stack (the "total" of BENCHMARKS.md: input buffer excluded)
  ms    = a linear per-operation model of the CPU's cycles (AVR: simavr cycles) or instructions
          (Cortex-M: QEMU instruction count, ms at one instruction per cycle), `SPEED_MODELS`, fitted
          to emulator counts of random candidates by `python bench/search.py --fit-cost` and checked
          on the shipped models: errors up to 40-70% (stated at SPEED_MODELS), a coarse model: the
          kernels skip work depending on the data. bench/search.py measures the final models exactly.
"""
import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..planning import boards
from .search_space import DEFAULT_SPACE, SPACES, SearchSpace

# ------------------------------------------------------------------------------------------------
# Targets and budgets

# CPUs a budget can name. code_scale: runtime code relative to the memory plan's Cortex-M3 -O2
# estimate (exporters/c.py CODE_BYTES), the largest ratio measured on the shipped models (bench/):
#   avr: avr-gcc -Os (Arduino's default): uno_mnist 11,756 B vs 5,960 estimated, m15 11,798 / 5,990,
#        tiny 11,052 / 5,720, paper 7,232 / 3,990: at most 1.97x -> 2.0;
#   cortex-m0plus: arm-none-eabi-gcc -O2, at most 1.09x -> 1.15;
#   cortex-m3: arm-none-eabi-gcc -Os -DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1 (the build of
#        bench/accuracy_memory.py, BENCHMARKS.md "Accuracy vs memory"): code 2,300 / 3,660 / 3,836 /
#        3,876 B (paper, tiny, uno, m15) vs 3,990 / 5,720 / 5,960 / 5,990 estimated: at most 0.65x.
# clock_mhz: the clock the ms figures assume (ATmega328P on the Uno: 16 MHz; Cortex-M3: 72 MHz as an
# STM32F103; Cortex-M0+: 48 MHz as a SAMD21). unit: what SPEED_MODELS predicts.
CPUS = {
    "avr": {"title": "ATmega328P", "clock_mhz": 16, "code_scale": 2.0, "unit": "cycles", "plan_target": "avr"},
    "cortex-m0plus": {"title": "Cortex-M0+", "clock_mhz": 48, "code_scale": 1.15, "unit": "instructions",
                      "plan_target": "cortex-m0plus"},
    "cortex-m3": {"title": "Cortex-M3", "clock_mhz": 72, "code_scale": 0.65, "unit": "instructions",
                  "plan_target": "cortex-m3"},
    # Cortex-M4 runs the same Thumb-2 code as the M3 (QEMU mps2-an386 for measurements); 64 MHz as an nRF52840
    "cortex-m4": {"title": "Cortex-M4", "clock_mhz": 64, "code_scale": 0.65, "unit": "instructions",
                  "plan_target": "cortex-m4"},
}
CPU_ALIASES = {"cortex-m0": "cortex-m0plus", "atmega328p": "avr"}  # board CPUs the table above covers

# Linear speed models: predicted count = sum(coef[f] * feature[f]) over `speed_features`; fitted by
# `python bench/search.py --fit-cost` (see there for the data and the error).
SPEED_FEATURES = ("in_macs", "in_outputs", "conv_macs", "conv_outputs", "dense_macs", "dense_outputs", "blocks")
SPEED_MODELS = {
    "avr": {"in_macs": 8.5914, "in_outputs": 0.0, "conv_macs": 0.4195, "conv_outputs": 335.1802,
            "dense_macs": 2.009, "dense_outputs": 0.0, "blocks": 24485.3574},
    "cortex-m3": {"in_macs": 3.8993, "in_outputs": 0.0, "conv_macs": 0.4787, "conv_outputs": 87.5941,
                  "dense_macs": 0.8391, "dense_outputs": 0.0, "blocks": 10893.9037},
    "cortex-m0plus": {"in_macs": 5.7877, "in_outputs": 0.0, "conv_macs": 0.6718, "conv_outputs": 125.6752,
                      "dense_macs": 1.1158, "dense_outputs": 0.0, "blocks": 15192.1007},
}
SPEED_MODELS["cortex-m4"] = SPEED_MODELS["cortex-m3"]  # same code; not fitted separately
# The fit (python bench/search.py --fit-cost --fit-candidates 24 --seed 0): relative error of the
# predicted count, max over the fitted random candidates / leave-one-out / on the shipped trained models:
#   avr (candidates that fit the Uno) (14): 44% / 71% / paper -47%, tiny +38%, uno +23%
#   cortex-m3 (24): 43% / 53% / paper -25%, tiny +19%, uno +16%, m15 +28%
#   cortex-m0plus (24): 39% / 50% / paper -23%, tiny +19%, uno +16%, m15 +28%
# The kernels' time depends on the data (all-zero input windows are skipped, a pooling window stops
# at its first 1 bit), which a per-operation model cannot see: it is a coarse pre-filter. When the
# emulators are available (a source checkout with avr-gcc + simavr or arm-none-eabi-gcc + QEMU),
# `measure` counts every candidate exactly instead (see search(measure=...)).
SPEED_MODEL_ERROR = 0.71  # largest leave-one-out relative error above: est / (1 + it) bounds the true count
SPEED_MODEL_NOTE = ("linear per-operation model fitted to emulator counts (bench/search.py --fit-cost); "
                    "leave-one-out error up to 71% (AVR), 53% (Cortex-M3)")


def board_budget(name):
    """{"cpu", "flash", "ram", "title", "clock_mhz"} of a --board name (keras_ebnn.planning.boards: e.g. uno =
    32 KB flash minus the 512 B Optiboot bootloader, 2 KB SRAM holding the input and the stack).
    ValueError for an unknown board or a CPU without a cost model here."""
    b = boards.get(name)
    out = {"cpu": CPU_ALIASES.get(b.cpu, b.cpu), "flash": int(b.flash_bytes), "ram": int(b.sram_bytes),
           "title": b.title, "clock_mhz": b.clock_mhz}
    if out["cpu"] not in CPUS:
        raise ValueError(f"board {name!r} has a {out['cpu']} CPU, for which the search has no cost model "
                         f"(supported: {', '.join(CPUS)})")
    return out


MS_STATS = ("max", "mean")  # what a time budget bounds (Budget.ms_stat, --ms-stat)


@dataclass
class Budget:
    """Limits a candidate must meet (None: no limit). ram counts the input buffer and the stack;
    total = flash + RAM without the input buffer (BENCHMARKS.md's "total"); ms on `cpu`."""
    cpu: str = "cortex-m3"
    max_flash: Optional[int] = None
    max_ram: Optional[int] = None
    max_total: Optional[int] = None
    max_ms: Optional[float] = None
    clock_mhz: Optional[float] = None  # None: the CPU's default clock in CPUS
    ms_stat: str = "max"  # what max_ms bounds: "max" the slowest probe image, "mean" the mean over them

    def __post_init__(self):
        if self.cpu not in CPUS:
            raise ValueError(f"unknown cpu {self.cpu!r}; choose one of {', '.join(CPUS)}")
        if self.clock_mhz is None:
            self.clock_mhz = CPUS[self.cpu]["clock_mhz"]
        if self.ms_stat not in MS_STATS:
            raise ValueError(f"ms_stat must be one of {', '.join(MS_STATS)}, not {self.ms_stat!r}")

    def violations(self, cost):
        """Texts naming each limit `cost` (from `estimate`) exceeds; empty when it fits."""
        out = []
        for what, limit, key, unit in (("flash", self.max_flash, "flash", "B"), ("RAM", self.max_ram, "ram", "B"),
                                       ("total", self.max_total, "bytes", "B"), ("time", self.max_ms, "ms", "ms")):
            if limit is not None and cost[key] > limit:
                out.append(f"{what} {cost[key]:,.1f} {unit} > {limit:,} {unit}" if unit == "ms"
                           else f"{what} {cost[key]:,} {unit} > {limit:,} {unit}")
        return out

    def excess(self, cost):
        """Largest relative excess over a limit (0.0 when `cost` fits): Optuna's constraint value."""
        worst = 0.0
        for limit, key in ((self.max_flash, "flash"), (self.max_ram, "ram"), (self.max_total, "bytes"),
                           (self.max_ms, "ms")):
            if limit is not None:
                worst = max(worst, cost[key] / limit - 1.0)
        return float(worst)

    def text(self):
        parts = [f"{k} {v:,} B" for k, v in (("flash", self.max_flash), ("RAM incl. input and stack", self.max_ram),
                                           ("flash + RAM (input excluded)", self.max_total)) if v is not None]
        if self.max_ms is not None:
            parts.append(f"<= {self.max_ms:g} ms " + ("per image (the slowest probe image)" if self.ms_stat == "max"
                                                      else "on average (mean over the probe images)"))
        return f"{CPUS[self.cpu]['title']} @ {self.clock_mhz:g} MHz: " + (", ".join(parts) or "no limit")


# ------------------------------------------------------------------------------------------------
# Cost model


def _plan(lowered, cpu):
    from ..exporters.c import memory_plan
    try:
        return memory_plan(lowered, target=CPUS[cpu]["plan_target"])
    except (TypeError, ValueError):  # a plan without per-target figures
        return memory_plan(lowered)


def speed_features(lowered):
    """Operation counts the speed model is linear in: MACs and outputs of the input conv, the binary
    convs and the dense blocks (hidden and output), and the block count."""
    from ..frontdoor.report import block_macs
    f = dict.fromkeys(SPEED_FEATURES, 0)
    for b in lowered.blocks:
        macs = block_macs(b)
        if b.kind in ("input_conv", "binary_conv"):
            ch, cw = b.geometry.conv_shape
            key = "in" if b.kind == "input_conv" else "conv"
            f[f"{key}_macs"] += macs
            f[f"{key}_outputs"] += ch * cw * b.weights.shape[0]
        else:
            f["dense_macs"] += macs
            f["dense_outputs"] += b.weights.shape[0]
    f["blocks"] = len(lowered.blocks)
    return f


def estimate(lowered, cpu="cortex-m3", clock_mhz=None):
    """Flash, RAM, bytes, speed of `lowered` on `cpu` (see the module docstring). Returns a dict:
    flash, ram (incl. input and stack), bytes (flash + arena + stack), arena, stack, input, code,
    data, ops (cycles or instructions), ms, macs."""
    c = CPUS[cpu]
    t = _plan(lowered, cpu)["totals"]
    code = int(math.ceil(t["code_bytes_estimate"] * c["code_scale"]))
    flash = t["flash_data_bytes"] + code
    stack = t["stack_bytes_estimate"]
    feats = speed_features(lowered)
    ops = float(sum(SPEED_MODELS[cpu][k] * feats[k] for k in SPEED_FEATURES))
    macs = feats["in_macs"] + feats["conv_macs"] + feats["dense_macs"]
    return {"flash": int(flash), "ram": int(t["arena_bytes"] + stack + t["input_bytes"]),
            "bytes": int(flash + t["arena_bytes"] + stack), "arena": int(t["arena_bytes"]), "stack": int(stack),
            "input": int(t["input_bytes"]), "code": code, "data": int(t["flash_data_bytes"]), "ops": ops,
            "ms": ops / ((clock_mhz or c["clock_mhz"]) * 1e3), "macs": int(macs)}


SMALL_STACK = ("-DEBNN_CHUNK=8", "-DEBNN_LOW_STACK=1")  # the runtime's size-over-speed options


def _targets():
    """(bench.targets.avr, bench.targets.cortexm) of a source checkout, or None (installed package)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "targets" / "avr.py").is_file():
        return None
    if str(root) not in sys.path:
        sys.path.append(str(root))
    try:
        from bench.targets import avr, cortexm
    except ImportError:
        return None
    return avr, cortexm


def emulator_available(cpu):
    """Can `measure` run for `cpu` here (source checkout; avr-gcc + simavr, or arm-none-eabi-gcc +
    qemu-system-arm)?"""
    t = _targets()
    return t is not None and (t[0].available() if cpu == "avr" else t[1].available())


def measure(lowered, cpu, images, clock_mhz=None):
    """Exact figures of `lowered` on `cpu` from its C export built and run in an emulator on `images`
    (a few seconds): avr: avr-gcc -Os under simavr (cycles); cortex-m*: arm-none-eabi-gcc -Os
    -DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1 under QEMU (instructions; ms at one instruction per cycle).
    flash = what the model adds to a program (data + runtime code + library routines), stack = the
    measured high-water mark of the predict call, ram = arena + stack + input buffer. ops / ms are the
    mean over the images, ops_max / ms_max the slowest image. The count depends on the weights and the
    data: for a candidate with random weights it is the count of that candidate, not of the trained
    model (search() measures the trained model again)."""
    import tempfile
    from ..exporters.c import export_c
    avr, cortexm = _targets()
    name = lowered.name
    images = np.asarray(images)
    with tempfile.TemporaryDirectory(prefix="ebnn-search-") as work:
        out = Path(work) / "c"
        export_c(lowered, out, name)
        if cpu == "avr":
            r = avr.build_and_run(out, name, images, lowered.num_classes, workdir=Path(work) / "build")
            ops, stack, each = r["cycles_per_inference"], r["stack_high_water_bytes"], r["cycles_per_image"]
        else:
            r = cortexm.build_and_run(out, name, images, lowered.num_classes, cpu=cpu, opt="-Os", flags=SMALL_STACK,
                                      workdir=Path(work) / "build")
            ops, stack, each = r["instructions_per_inference"], r["stack_bytes"], r.get("instructions_per_image")
    arena = int(r["symbols"].get(f"{name}_arena", 0))
    clock = (clock_mhz or CPUS[cpu]["clock_mhz"]) * 1e3
    inp = lowered.input.length * (1 if lowered.input.dtype == np.uint8 else 4)
    return {"flash": int(r["model_flash"]), "ram": int(arena + stack + inp), "bytes": int(r["model_flash"] + arena + stack),
            "arena": arena, "stack": int(stack), "input": int(inp), "code": int(r["code_bytes"]), "ops": float(ops),
            "ms": float(ops) / clock, "ops_max": float(max(each)) if each else None,
            "ms_max": float(max(each)) / clock if each else None, "images": int(len(images)), "source": "emulator"}


def budgeted(cost, stat):
    """`cost` (from `estimate` or `measure`) with "ms" / "ops" the figures a time budget bounds:
    stat "max": the slowest image's (when measured per image; the cost model has one figure),
    "mean": the mean over the images. The mean is kept as "ms_mean" / "ops_mean"."""
    cost = dict(cost)
    cost.setdefault("ms_mean", cost["ms"])
    cost.setdefault("ops_mean", cost["ops"])
    if stat == "max" and cost.get("ms_max") is not None:
        cost.update(ms=cost["ms_max"], ops=cost["ops_max"])
    else:
        cost.update(ms=cost["ms_mean"], ops=cost["ops_mean"])
    return cost


def probe_images(x, n, stat):
    """The `n` images the emulator runs for a time budget: stat "mean": the first n of `x`; "max": the
    first n//2 of `x` and the n - n//2 others with the most non-zero pixels (the first layer skips
    all-zero input windows, so ink costs time: under simavr, the slowest of the first 100 MNIST test
    images for `uno_search_mnist` is the one with the most ink; bench/presets.py records that rank,
    "slowest_image_ink_rank" in examples/models/uno_search_mnist.json)."""
    x = np.asarray(x)
    n = min(int(n), len(x))
    if stat != "max" or n == 0:
        return x[:n]
    first = n // 2
    ink = np.count_nonzero(x[first:].reshape(len(x) - first, -1), axis=1)
    inky = first + np.argsort(-ink, kind="stable")[:n - first]
    return np.concatenate([x[:first], x[np.sort(inky)]])


# ------------------------------------------------------------------------------------------------
# Data


def load_data(dataset, data_dir=None):
    """((x_train, y_train), (x_test, y_test)) for "mnist", "fashion_mnist", an IDX folder (MNIST
    layout, see keras_ebnn.train.datasets) or an .npz file with x, y (and optionally x_test, y_test; else
    its last fifth is the test split), or "cifar10" (keras_ebnn.train.datasets.load_cifar10, the JPEG copy;
    its training images, stored by class, come in a fixed random order (seed 0) so that the last
    val_size of them are a validation split of every class)."""
    from . import datasets
    if str(dataset) == "cifar10":
        (xtr, ytr), test = datasets.load_cifar10(data_dir)
        perm = np.random.default_rng(0).permutation(len(xtr))
        return (xtr[perm], ytr[perm]), test
    p = Path(str(dataset))
    if p.suffix == ".npz" and p.is_file():
        d = np.load(p)
        x, y = d["x"].reshape(-1, 28, 28, 1) if d["x"].ndim == 3 else d["x"], d["y"].reshape(-1)
        if "x_test" in d:
            return (x, y), (d["x_test"], d["y_test"].reshape(-1))
        cut = len(x) - len(x) // 5
        return (x[:cut], y[:cut]), (x[cut:], y[cut:])
    if p.is_dir():
        for name in ("mnist", "fashion_mnist"):
            if datasets.find_dir(name, p, use_env=False) is not None:
                return datasets.load(name, p)
        raise FileNotFoundError(f"{p}: no MNIST-layout IDX files (train-images-idx3-ubyte.gz, ...) found")
    return datasets.load(str(dataset), data_dir)


def split_validation(x, y, val_size):
    """(train, val): the last val_size images are the validation split (as examples/train_mnist.py)."""
    if not 0 < val_size < len(x):
        raise ValueError(f"val_size must be between 1 and {len(x) - 1}, got {val_size}")
    cut = len(x) - val_size
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


# ------------------------------------------------------------------------------------------------
# Training one candidate


class _Stop(Exception):
    pass


def _early_stop(patience):
    """A Keras callback that stops training (by raising _Stop, caught by train_candidate) once
    val_accuracy has not improved for `patience` epochs; it keeps its state across the per-epoch
    fit() calls of the augmented path of training.train."""
    from .._tf import import_tf
    tf = import_tf()

    class EarlyStop(tf.keras.callbacks.Callback):
        best, wait = -1.0, 0

        def on_epoch_end(self, epoch, logs=None):
            acc = (logs or {}).get("val_accuracy")
            if acc is None:
                return
            if acc > self.best:
                self.best, self.wait = acc, 0
            else:
                self.wait += 1
                if self.wait >= patience:
                    raise _Stop()
    return EarlyStop()


def train_candidate(model, params, train, val, epochs, batch_size=128, seed=0, patience=None, verbose=0,
                    bn_images=20_000, teacher=None, alpha=0.3, temperature=2.0):
    """Train `model` with the recipe of keras_ebnn.train.training.train and the candidate's knobs (lr,
    shift, hflip, epochs if searched), re-estimate its BN statistics on (up to `bn_images`) training
    images when params["bn_reestimate"], and return its Keras accuracy on the validation split `val`.
    patience: stop after that many epochs without a better val_accuracy (None: never).
    teacher: a trained Keras model to distil from (training.train's teacher, alpha, temperature)."""
    from . import training
    from .._tf import import_tf
    tf = import_tf()
    tf.keras.utils.set_random_seed(seed)
    (xtr, ytr), (xval, yval) = train, val
    callbacks = [_early_stop(patience)] if patience else None
    try:
        training.train(model, xtr, ytr, xval, yval, epochs=int(params.get("epochs") or epochs),
                       batch_size=batch_size, lr=float(params["lr"]), max_shift=int(params.get("shift", 0)),
                       hflip=bool(params.get("hflip")), seed=seed, verbose=verbose, callbacks=callbacks,
                       **({} if teacher is None else dict(teacher=teacher, alpha=alpha, temperature=temperature)))
    except _Stop:
        pass
    if params.get("bn_reestimate", True):
        training.reestimate_batchnorm(model, xtr[:bn_images])
    return training.evaluate(model, xval, yval)


# ------------------------------------------------------------------------------------------------
# Storage and study


def default_storage(out):
    return str(Path(out) / "search.journal")


def open_storage(url):
    """An Optuna storage for `url`: a path (or journal:PATH) -> JournalStorage on that file;
    sqlite:///..., postgresql://..., mysql://... -> RDBStorage with heartbeats. postgresql:// without a
    driver uses the installed one: psycopg 3 (postgresql+psycopg://), else psycopg2."""
    import optuna
    from optuna.storages import RDBStorage
    url = str(url)
    if "://" not in url:
        try:
            from optuna.storages.journal import JournalFileBackend, JournalStorage
        except ImportError:  # Optuna 3.x names
            from optuna.storages import JournalFileStorage as JournalFileBackend, JournalStorage
        path = url[len("journal:"):] if url.startswith("journal:") else url
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # no driver named: take the installed one (SQLAlchemy 2.1 defaults to psycopg 3, 2.0 to psycopg2)
        rest = url.split("://", 1)[1]
        for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
            try:
                __import__(module)
                url = f"{dialect}://{rest}"
                break
            except ImportError:
                continue
        else:
            raise ImportError("a postgresql:// storage needs SQLAlchemy and a driver: pip install sqlalchemy "
                              "psycopg2-binary (or psycopg[binary])")
    import inspect
    import warnings
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(5):  # workers starting together race to create the schema: the loser retries
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # a crashed worker's trial: failed after grace_period without a heartbeat, retried once
                if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters:  # >= 4.9
                    from optuna.storages import RetryHeartbeatStaleTrialCallback
                    retry = {"heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1)}
                else:
                    from optuna.storages import RetryFailedTrialCallback
                    retry = {"failed_trial_callback": RetryFailedTrialCallback(max_retry=1)}
                return RDBStorage(url, heartbeat_interval=60, grace_period=180, **retry)
        except ImportError:
            raise
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.5 + np.random.default_rng().random() * 2)


def directions(objectives):
    return ["maximize" if o == "accuracy" else "minimize" for o in objectives]


def constraints(trial):
    """Optuna constraints: the budget excess recorded by the objective (> 0: over the budget)."""
    return [float(trial.user_attrs.get("excess", 0.0))]


def _set_excess(trial, value, final=True):
    """Record the budget excess as a user attribute and, once final, as Optuna's constraint
    (Trial.set_constraint, Optuna >= 5, can be set once; older versions read the attribute through
    the samplers' constraints_func)."""
    trial.set_user_attr("excess", float(value))
    if final and hasattr(trial, "set_constraint"):
        trial.set_constraint("budget", float(value))


def make_sampler(kind, seed, trials):
    import optuna
    legacy = {} if hasattr(optuna.trial.Trial, "set_constraint") else {"constraints_func": constraints}
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, trials // 3)),
                                          multivariate=True, **legacy)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials // 3)), **legacy)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {kind!r} (tpe, nsga2, random)")


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def recover(study):
    """Resume bookkeeping, run by every process before it starts trials: a RUNNING trial started by a
    process of this host that no longer exists (a crash, kill -9: the journal file has no heartbeat)
    is marked FAIL; every FAIL trial interrupted by Ctrl-C or a crash (not one that failed with an
    error: it would fail again) whose candidate has not been retried yet is enqueued again, so no
    candidate is lost. Returns the numbers of the
    retried trials."""
    import optuna
    from optuna.trial import TrialState
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and "pid" in t.user_attrs and not _pid_alive(t.user_attrs["pid"]):
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    retried = set(study.user_attrs.get("retried", []))
    # trials an RDB storage's heartbeat callback already re-enqueued (system attribute "failed_trial")
    retried |= {t.system_attrs.get("failed_trial") for t in study.get_trials(deepcopy=False)} - {None}
    again = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.number not in retried and t.params and not t.user_attrs.get("error"):
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
            again.append(t.number)
    if again:
        study.set_user_attr("retried", sorted(set(study.user_attrs.get("retried", [])) | set(again)))
    del optuna
    return again


# ------------------------------------------------------------------------------------------------
# The search


@dataclass
class SearchResult:
    study: object
    out: Path
    front: list  # Pareto-optimal rows (dicts), most accurate first
    complete: int
    infeasible: int
    failed: int
    best: Optional[dict] = None  # the chosen trial's row
    final: dict = field(default_factory=dict)  # retrained model: val/test accuracy, files, export summary


class Progress:
    """One line per finished trial on `stream`: trial k/N, infeasible count, best validation accuracy
    so far (with its bytes), elapsed time and ETA (this process's wall time per trained trial,
    infeasible candidates included, x trained trials left; capped by the time budget)."""

    def __init__(self, target, timeout=None, stream=None, objectives=("accuracy", "bytes")):
        self.target, self.timeout, self.stream = target, timeout, stream or sys.stderr
        self.start = time.time()
        self.objectives = objectives
        self.trained = 0

    def __call__(self, study, trial):
        from optuna.trial import TrialState
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        self.trained += trial.state == TrialState.COMPLETE
        elapsed = time.time() - self.start
        left = max(self.target - len(done), 0)
        eta = elapsed / self.trained * left if self.trained else float("nan")
        if self.timeout is not None:
            eta = min(eta, max(self.timeout - elapsed, 0)) if not math.isnan(eta) else max(self.timeout - elapsed, 0)
        best = max((t for t in done if not t.user_attrs.get("violations")), key=lambda t: (t.values[0], -t.values[1]),
                   default=None)
        if trial.state == TrialState.COMPLETE:
            what = f"val {trial.values[0] * 100:.2f}% {trial.user_attrs.get('bytes', 0):,} B"
        elif trial.state == TrialState.PRUNED:
            what = "infeasible: " + str(trial.user_attrs.get("infeasible", "pruned"))
        else:
            what = f"{trial.state.name} {trial.user_attrs.get('error', '')}"
        best_txt = (f"best val {best.values[0] * 100:.2f}% ({best.user_attrs.get('bytes', 0):,} B, #{best.number})"
                    if best else "best -")
        self.stream.write(f"[trial {len(done)}/{self.target} trained, {pruned} infeasible] #{trial.number} {what} | "
                          f"{best_txt} | elapsed {_hms(elapsed)} ETA {_hms(eta)}\n")
        self.stream.flush()


def _hms(s):
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "?"
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _row(trial, objectives):
    u = trial.user_attrs
    row = {"trial": trial.number, "val_accuracy": trial.values[0], "flash": u.get("flash"), "ram": u.get("ram"),
           "bytes": u.get("bytes"), "ms": u.get("ms"), "ms_mean": u.get("ms_mean"), "ms_max": u.get("ms_max"),
           "arch": u.get("arch"), "params": dict(trial.params),
           "train_seconds": u.get("train_seconds")}
    return row


def pareto_rows(study, objectives):
    """The Pareto-optimal complete trials as rows, most accurate first (ties: fewer bytes)."""
    rows = [_row(t, objectives) for t in study.best_trials if not t.user_attrs.get("violations")]
    return sorted(rows, key=lambda r: (-r["val_accuracy"], r["bytes"] or 0, r["trial"]))


def _row_ms(r):
    mean = r["ms"] if r.get("ms_mean") is None else r["ms_mean"]
    return f"{mean:.1f} / {r['ms_max']:.1f}" if r.get("ms_max") is not None else f"{mean:.1f} / -"


def pareto_table(rows, budget):
    lines = [f"| trial | val. accuracy | flash B | RAM B (incl. input, stack) | bytes (flash + RAM - input) | "
             f"ms mean / slowest probe image ({CPUS[budget.cpu]['title']} @ {budget.clock_mhz:g} MHz) | "
             "architecture and recipe |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['val_accuracy'] * 100:.2f}% | {r['flash']:,} | {r['ram']:,} | "
                     f"{r['bytes']:,} | {_row_ms(r)} | {r['arch']} |")
    return "\n".join(lines)


def pareto_plot(study, rows, path, title, references=None):
    """pareto.png: validation accuracy vs bytes of every trained trial, the front highlighted;
    references: optional {label: (bytes, accuracy)} drawn as crosses. Returns the path or None
    (matplotlib missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([t.user_attrs.get("bytes") for t in done], [t.values[0] * 100 for t in done], s=14, c="0.6",
               label=f"trained trials ({len(done)})")
    front = sorted(rows, key=lambda r: r["bytes"])
    ax.plot([r["bytes"] for r in front], [r["val_accuracy"] * 100 for r in front], "o", c="C0",
            label="Pareto-optimal (all objectives)")
    for label, (b, acc) in (references or {}).items():
        ax.scatter([b], [acc * 100], marker="x", s=60, label=label)
    ax.set_xlabel("flash + RAM, bytes (input buffer excluded)")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def search(dataset="mnist", *, board=None, cpu=None, max_flash=None, max_ram=None, max_total=None, max_ms=None,
           trials=20, epochs=3, time_budget=None, storage=None, study_name="ebnn-search", out="search_out",
           space: SearchSpace = DEFAULT_SPACE, data=None, data_dir=None, val_size=5000, train_size=None,
           batch_size=128, patience=2, final_epochs=20, final=True, objectives=None, minimize_ms=False,
           sampler="tpe", seed=None, max_infeasible=None, name="best", stream=None, callbacks=(),
           references=None, measure="auto", measure_images=10, final_candidates=1, ms_stat="max",
           final_measure_images=100, final_teacher=None,
           distill_alpha=0.3, distill_temperature=2.0):
    """Run (or resume) a search and return a SearchResult. See the module docstring.

    dataset/data_dir: see load_data; or data=((x_train, y_train), (x_test, y_test)) directly.
    board: a --board name (sets cpu, max_flash, max_ram); cpu: "avr", "cortex-m0plus", "cortex-m3".
    trials: trained (complete) trials the study should hold; epochs: per trial (each stops early
    after `patience` epochs without a better validation accuracy); train_size: use only the first
    N training images in trials (the final retraining uses them all); time_budget: minutes for this
    process's trials (Optuna's timeout: the running trial finishes). storage: URL or file path
    (default OUT/search.journal); study_name: the study in it (resumed if it exists).
    final: retrain the most accurate front trial for final_epochs, test it once, export it.
    final_candidates: retrain the K most accurate front trials instead and keep the one with the best
    VALIDATION accuracy after retraining (the test set still sees only that one).
    final_teacher: distil the final retraining from this trained Keras model (or .keras file, loaded
    with keras_ebnn.load_model), e.g. keras_ebnn.train.training.teacher_model trained on the same training
    split; loss (1 - distill_alpha) x cross-entropy + distill_alpha x T^2 x KL at temperature
    distill_temperature (keras_ebnn.train.training.distillation_loss). The trials are not distilled.
    objectives: default ("accuracy", "bytes"), + "ms" when max_ms or minimize_ms.
    sampler: "tpe" (default), "nsga2", "random"; seed: the sampler's seed (None: different per process).
    callbacks: extra Optuna callbacks (called after every trial).
    measure: how flash, RAM and ms are checked: "model" (`estimate`: memory plan + speed model),
    "emulator" (`measure`: exact, a few seconds per candidate that passes the exact lower bounds of
    the plan), "auto" (the emulator when available for the CPU, else the model). With the emulator,
    a trained model is measured again (its ms and count replace the random-weight ones); a trained
    trial over the speed budget then is kept but marked ("violations", constraint > 0) and left off
    the front. measure_images: validation images the emulator runs (`probe_images`).
    ms_stat: what max_ms bounds (and the "ms" objective is): "max" (default) the slowest probe image,
    "mean" the mean over the probe images. Only the emulator measures per image; the cost model
    predicts one figure per candidate (the kernels' data-dependent time is invisible to it).
    final_measure_images: with the emulator, the final model is also run on that many TEST images
    (a measurement, after the choice): best.json and report.md give the mean and the slowest image.
    """
    import optuna
    from optuna.trial import TrialState
    from .._tf import import_tf
    from ..errors import UnsupportedModelError
    from ..frontend.lowering import lower

    tf = import_tf()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clock = None
    if board is not None:
        b = board_budget(board)
        clock = b.get("clock_mhz") if cpu in (None, b["cpu"]) else None
        cpu = cpu or b["cpu"]
        max_flash = b["flash"] if max_flash is None else max_flash
        max_ram = b["ram"] if max_ram is None else max_ram
    budget = Budget(cpu or "cortex-m3", max_flash, max_ram, max_total, max_ms, clock, ms_stat)
    objectives = tuple(objectives or (("accuracy", "bytes", "ms") if (max_ms is not None or minimize_ms)
                                      else ("accuracy", "bytes")))
    if objectives[:2] != ("accuracy", "bytes") or not set(objectives) <= {"accuracy", "bytes", "ms"}:
        raise ValueError("objectives must start with ('accuracy', 'bytes') and may add 'ms'")
    stream = stream or sys.stderr
    if measure not in ("auto", "model", "emulator"):
        raise ValueError(f"measure must be 'auto', 'model' or 'emulator', not {measure!r}")
    use_emulator = measure == "emulator" or (measure == "auto" and emulator_available(budget.cpu))
    if measure == "emulator" and not emulator_available(budget.cpu):
        raise RuntimeError(f"measure='emulator': no emulator toolchain for {budget.cpu} here (a source checkout "
                           "with avr-gcc + simavr, or arm-none-eabi-gcc + qemu-system-arm, is needed)")
    max_infeasible = max_infeasible if max_infeasible is not None else max(200, 50 * trials)

    (xtr_all, ytr_all), (xte, yte) = data if data is not None else load_data(dataset, data_dir)
    ytr_all, yte = np.asarray(ytr_all).reshape(-1), np.asarray(yte).reshape(-1)
    xtr_all, xte = np.asarray(xtr_all), np.asarray(xte)
    if xtr_all.ndim == 3:  # (N, H, W) grey images: one channel
        xtr_all, xte = xtr_all[..., None], xte[..., None]
    train, val = split_validation(np.asarray(xtr_all), ytr_all, val_size)
    trial_train = train if train_size is None else (train[0][:train_size], train[1][:train_size])
    classes = int(max(ytr_all.max(), yte.max())) + 1
    input_shape = tuple(int(d) for d in np.asarray(xtr_all).shape[1:])

    storage_url = storage or default_storage(out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=open_storage(storage_url),
                                directions=directions(objectives), load_if_exists=True,
                                sampler=make_sampler(sampler, seed, trials))
    probe = probe_images(val[0], measure_images, budget.ms_stat)

    def cost_of(lowered):
        cost = dict(estimate(lowered, budget.cpu, budget.clock_mhz), source="model")
        if use_emulator:
            cost = dict(cost, **measure_fn(lowered, budget.cpu, probe, budget.clock_mhz))
        return budgeted(cost, budget.ms_stat)
    config = {"objectives": list(objectives), "budget": budget.__dict__, "dataset": str(dataset), "val_size": val_size}
    if "config" not in study.user_attrs:
        study.set_user_attr("config", config)
    elif study.user_attrs["config"] != json.loads(json.dumps(config)):
        stream.write(f"warning: study {study_name!r} was started with {study.user_attrs['config']}, "
                     f"now {config}\n")
    retried = recover(study)
    if retried:
        stream.write(f"resuming: trials {retried} were interrupted; their candidates run again first\n")
    host, pid = socket.gethostname(), os.getpid()
    measure_fn = globals()["measure"]

    def objective(trial):
        """Runs one trial; an error (not an interrupt) is recorded as the trial's "error" attribute
        and fails only that trial (such trials are not retried on resume)."""
        try:
            return run_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise

    def run_trial(trial):
        trial.set_user_attr("host", host)
        trial.set_user_attr("pid", pid)
        params = space.suggest(trial)
        tf.keras.backend.clear_session()  # a long search builds hundreds of models: free the old ones
        try:
            arch = space.describe(params)
            model = space.build(params, classes, input_shape, name=name)
            lowered = lower(model, name)
        except (ValueError, UnsupportedModelError) as exc:  # geometry that does not work or does not lower
            trial.set_user_attr("infeasible", f"invalid: {exc}")
            raise optuna.TrialPruned(str(exc))
        trial.set_user_attr("arch", arch)
        cost = dict(estimate(lowered, budget.cpu, budget.clock_mhz), source="model")
        if use_emulator:  # exact lower bounds first (milliseconds), then the emulator (seconds)
            bound = {"flash": cost["data"], "ram": cost["arena"] + cost["input"], "bytes": cost["data"] + cost["arena"],
                     "ms": cost["ms"] / (1 + SPEED_MODEL_ERROR)}
            problems = budget.violations(bound)
            if problems:
                _set_excess(trial, budget.excess(bound))
                trial.set_user_attr("infeasible", "lower bound: " + "; ".join(problems))
                raise optuna.TrialPruned("; ".join(problems))
            try:
                cost = budgeted(dict(cost, **measure_fn(lowered, budget.cpu, probe, budget.clock_mhz)),
                                budget.ms_stat)
            except (RuntimeError, subprocess.SubprocessError) as exc:  # e.g. avr-ld: region overflowed
                trial.set_user_attr("infeasible", f"does not build or run on {budget.cpu}: {str(exc)[-300:]}")
                _set_excess(trial, 1.0)
                raise optuna.TrialPruned(str(exc)[-300:])
        cost = budgeted(cost, budget.ms_stat)
        for k in ("flash", "ram", "bytes", "ms", "ms_mean", "ms_max", "ops", "macs", "code", "data", "arena", "stack",
                  "source"):
            trial.set_user_attr(k, cost.get(k))
        problems = budget.violations(cost)
        _set_excess(trial, budget.excess(cost), final=bool(problems) or not use_emulator)
        if problems:
            trial.set_user_attr("infeasible", "; ".join(problems))
            raise optuna.TrialPruned("; ".join(problems))
        key = json.dumps({"arch": arch, "lr": params["lr"], "epochs": params.get("epochs") or epochs})
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("key") == key:  # same network and recipe (unused genes differ)
                trial.set_user_attr("key", key)
                trial.set_user_attr("duplicate_of", t.number)
                if use_emulator:
                    _set_excess(trial, budget.excess(cost))
                trial.set_user_attr("train_seconds", 0.0)
                return tuple(t.values)
        trial.set_user_attr("key", key)
        start = time.time()
        acc = train_candidate(model, params, trial_train, val, epochs, batch_size=batch_size,
                              seed=trial.number, patience=patience)
        trial.set_user_attr("train_seconds", round(time.time() - start, 1))
        if use_emulator:  # the trained weights change the data-dependent kernel times
            trained = budgeted(measure_fn(lower(model, name), budget.cpu, probe, budget.clock_mhz), budget.ms_stat)
            trial.set_user_attr("ms_random_weights", cost["ms"])
            cost.update({k: trained.get(k) for k in ("ms", "ops", "ms_mean", "ms_max")})
            for k in ("ms", "ops", "ms_mean", "ms_max"):
                trial.set_user_attr(k, cost[k])
            _set_excess(trial, budget.excess(cost))
            if budget.violations(cost):
                trial.set_user_attr("violations", "; ".join(budget.violations(cost)))
        values = {"accuracy": float(acc), "bytes": float(cost["bytes"]), "ms": float(cost["ms"])}
        return tuple(values[o] for o in objectives)

    def counts():
        ts = study.get_trials(deepcopy=False)
        return (sum(t.state == TrialState.COMPLETE for t in ts), sum(t.state == TrialState.PRUNED for t in ts),
                sum(t.state == TrialState.FAIL for t in ts))

    def stop_when_done(study_, trial):
        c, p, f = counts()
        if c >= trials or p >= max_infeasible or f >= max(10, trials):
            study_.stop()

    complete, _, _ = counts()
    stream.write(f"study {study_name!r} in {storage_url}: {complete} trained trials so far, target {trials}; "
                 f"budget {budget.text()}; objectives {', '.join(objectives)}\n")
    if complete < trials:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        progress = Progress(trials, None if time_budget is None else time_budget * 60, stream, objectives)
        study.optimize(objective, n_trials=None, timeout=None if time_budget is None else time_budget * 60,
                       callbacks=[progress, stop_when_done, *callbacks], catch=(Exception,))
    complete, infeasible, failed = counts()
    rows = pareto_rows(study, objectives) if complete else []
    result = SearchResult(study=study, out=out, front=rows, complete=complete, infeasible=infeasible, failed=failed)
    _write_front(result, budget, objectives, study, references)
    if final and rows:
        result.best = rows[0]
        test_cost = ((lambda low: measure_fn(low, budget.cpu, xte[:final_measure_images], budget.clock_mhz))
                     if use_emulator and final_measure_images else None)
        teacher, distill = _teacher(final_teacher, distill_alpha, distill_temperature)
        result.final = finalize(rows[:max(1, int(final_candidates))], space, train, val, (xte, yte), classes,
                                input_shape, budget, out, final_epochs, batch_size, name, stream, cost_of, test_cost,
                                teacher=teacher, distill=distill)
        _write_report(result, budget, objectives, trials, epochs, final_epochs, train_size, val_size, storage_url,
                      study_name)
    return result


def _teacher(teacher, alpha, temperature):
    """(teacher model or None, distill settings or None) of search()'s final_teacher: a Keras model,
    or a path loaded with keras_ebnn's load_model."""
    if teacher is None:
        return None, None
    label = getattr(teacher, "name", "teacher")
    if isinstance(teacher, (str, os.PathLike)):
        from ..frontend.model_loading import load_model
        label = str(teacher)
        teacher = load_model(teacher)
    if not 0.0 <= float(alpha) <= 1.0 or float(temperature) <= 0:
        raise ValueError(f"distill_alpha must be in [0, 1] and distill_temperature > 0 (got {alpha}, {temperature})")
    return teacher, {"teacher": label, "alpha": float(alpha), "temperature": float(temperature)}


def _write_front(result, budget, objectives, study, references):
    if not result.front:
        return
    table = pareto_table(result.front, budget)
    (result.out / "pareto.md").write_text(
        f"# Pareto front of study {study.study_name!r}\n\nBudget: {budget.text()}. Objectives: "
        f"{', '.join(objectives)}. {result.complete} trained trials, {result.infeasible} infeasible candidates "
        f"rejected before training, {result.failed} failed. Accuracies are on the VALIDATION split.\n\n{table}\n")
    pareto_plot(study, result.front, result.out / "pareto.png",
                f"{study.study_name}: {budget.text()}\n{result.complete} trained, {result.infeasible} infeasible "
                "(never trained)", references)


def finalize(rows, space, train, val, test, classes, input_shape, budget, out, final_epochs, batch_size, name,
             stream, cost_of=None, test_cost=None, teacher=None, distill=None):
    """Retrain each candidate of `rows` (front trials, most accurate first) from scratch for
    final_epochs on `train` (no early stop) and keep the one with the best validation accuracy (the
    first on ties); evaluate only that one ONCE on `test`, save OUT/NAME.keras and export it to
    OUT/NAME_c with keras_ebnn.export (verified on the test images: reference vs Keras, and the
    compiled C vs the reference bit for bit when a host C compiler exists). test_cost: a function
    measuring the final model on test images (mean and slowest image), recorded as "test_time".
    teacher: a trained Keras model the retraining distils from; distill: {"alpha", "temperature",
    "teacher"} (the last a label recorded in best.json)."""
    from . import training
    from ..frontdoor.exporting import export
    from ..frontend.lowering import lower
    from .._tf import import_tf
    tf = import_tf()
    retrained = []  # (val accuracy, -index, row, params, model, minutes)
    for i, row in enumerate(rows):
        params = dict(row["params"])
        params["epochs"] = final_epochs
        stream.write(f"final: retraining trial #{row['trial']} ({row['arch']}) for {final_epochs} epochs on "
                     f"{len(train[0]):,} images" + ("" if teacher is None else f", distilled ({distill})") + "\n")
        model = space.build(params, classes, input_shape, name=name)
        start = time.time()
        kd = {} if teacher is None else dict(teacher=teacher, alpha=distill["alpha"],
                                             temperature=distill["temperature"])
        acc = train_candidate(model, params, train, val, final_epochs, batch_size=batch_size, seed=0,
                              patience=None, bn_images=len(train[0]), **kd)
        retrained.append((acc, -i, row, params, model, (time.time() - start) / 60))
        stream.write(f"final: trial #{row['trial']} retrained: val {acc * 100:.2f}%\n")
    val_acc, _, row, params, model, minutes = max(retrained, key=lambda r: r[:2])
    candidates = [{"trial": r[2]["trial"], "val_accuracy": r[0]} for r in retrained]
    test_acc = training.evaluate(model, *test)  # the one evaluation on the test set
    path = out / f"{name}.keras"
    plain = tf.keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    plain.save(path)
    cost = (cost_of or (lambda low: budgeted(dict(estimate(low, budget.cpu, budget.clock_mhz), source="model"),
                                             budget.ms_stat)))(lower(model, name))
    test_time = None
    if test_cost is not None:
        t = test_cost(lower(model, name))
        test_time = {"images": t.get("images"), "ms_mean": t["ms"], "ms_max": t.get("ms_max")}
    res = export(model, out / f"{name}_c", name=name, target="c", verify_inputs=test[0], verify_labels=test[1])
    final = {"trial": row["trial"], "arch": row["arch"], "params": params, "epochs": final_epochs,
             "train_minutes": round(minutes, 1), "val_accuracy": val_acc, "test_accuracy_keras": test_acc,
             "test_accuracy_c": res.accuracy, "c_checked": res.c_checked,
             "c_matches_reference": res.c_matches_reference,
             "reference_vs_keras": None if res.agreement is None else res.agreement.summary(),
             "keras_file": str(path), "c_dir": str(out / f"{name}_c"), "cost": cost,
             "fits": not budget.violations(cost), "candidates": candidates, "test_time": test_time,
             "distill": None if teacher is None else distill}
    (out / "best.json").write_text(json.dumps(final, indent=1, default=str))
    stream.write(f"final: val {val_acc * 100:.2f}%, TEST {test_acc * 100:.2f}% (Keras), exported C "
                 f"{(res.accuracy or 0) * 100:.2f}%, C = reference: {res.c_matches_reference}; "
                 f"{cost['flash']:,} B flash, {cost['ram']:,} B RAM, {_ms_text(cost)}"
                 + (f"; {test_time['images']} test images: {test_time['ms_mean']:.1f} ms mean, "
                    f"{test_time['ms_max']:.1f} ms slowest" if test_time and test_time["ms_max"] is not None else "")
                 + f" -> {path}\n")
    return final


def _ms_text(cost):
    """'88.2 ms mean / 119.0 ms slowest of 10 probe images' (emulator) or '~88.2 ms (cost model)'."""
    if cost.get("ms_max") is not None:
        n = cost.get("images")
        return (f"{cost['ms_mean']:.1f} ms mean / {cost['ms_max']:.1f} ms slowest of "
                f"{n if n is not None else 'the'} probe images")
    return f"~{cost.get('ms_mean', cost['ms']):.1f} ms (cost model)"


def _candidates_text(final):
    c = final.get("candidates") or []
    if len(c) < 2:
        return ""
    tried = ", ".join(f"#{x['trial']} {x['val_accuracy'] * 100:.2f}%" for x in c)
    return (f"; chosen among the {len(c)} most accurate front trials, each retrained, by validation accuracy "
            f"after retraining: {tried}")


def _test_time_text(final):
    t = final.get("test_time")
    if not t or t.get("ms_max") is None:
        return ""
    return (f"\nTime on the first {t['images']} test images (measured after the choice): {t['ms_mean']:.1f} ms mean, "
            f"**{t['ms_max']:.1f} ms for the slowest image**.")


def _distill_text(final):
    d = final.get("distill")
    if not d:
        return ""
    return (f", distilled from the float teacher `{d['teacher']}` (alpha {d['alpha']:g}, temperature "
            f"{d['temperature']:g})")


def _write_report(result, budget, objectives, trials, epochs, final_epochs, train_size, val_size, storage, study):
    f = result.final
    text = f"""# keras-ebnn search: {study}

Budget: {budget.text()}. Objectives: {', '.join(objectives)}. Storage: `{storage}`.

**Selection honesty.** Every trial was trained on the training split{'' if train_size is None else
f" (its first {train_size:,} images)"} for up to {epochs} epochs and scored on a validation split (the
last {val_size:,} training images) only. The chosen model (the most accurate trial of the Pareto front,
#{f['trial']}{_candidates_text(f)}) was then retrained from scratch for {final_epochs} epochs on the whole
training split{_distill_text(f)} and evaluated **once** on the test set; the test set played no part in any
choice.

{result.complete} trained trials (target {trials}), {result.infeasible} candidates rejected before training
(over budget or invalid geometry), {result.failed} failed or interrupted.

## Pareto front (validation accuracy)

{pareto_table(result.front, budget)}

## Chosen model

`{f['arch']}`, retrained {final_epochs} epochs ({f['train_minutes']} min): validation {f['val_accuracy'] * 100:.2f}%,
**test {f['test_accuracy_keras'] * 100:.2f}%** (Keras), exported C {(f['test_accuracy_c'] or 0) * 100:.2f}%
(compiled C = reference bit for bit: {f['c_matches_reference']}; reference vs Keras: {f['reference_vs_keras']}).
On {CPUS[budget.cpu]['title']} ({f['cost'].get('source', 'model')}): flash {f['cost']['flash']:,} B, RAM {f['cost']['ram']:,} B (incl.
{f['cost']['input']} B input), {_ms_text(f['cost'])}; fits the budget: {f['fits']}.{_test_time_text(f)}
Files: `{Path(f['keras_file']).name}`, `{Path(f['c_dir']).name}/`, `pareto.md`, `pareto.png`, `best.json`.
"""
    (result.out / "report.md").write_text(text)


# ------------------------------------------------------------------------------------------------
# CLI


def main(argv=None):
    ap = argparse.ArgumentParser(prog="keras-ebnn-search", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:31]))
    ap.add_argument("--dataset", default="mnist", help="mnist, fashion_mnist, cifar10, an IDX folder or an .npz (x, y)")
    ap.add_argument("--space", default="default", choices=sorted(SPACES),
                    help="search space (keras_ebnn.train.search_space.SPACES): default (28x28 chains), cifar10 "
                         "(binary VGG chains for 32x32x3)")
    ap.add_argument("--data-dir", default=None, help="IDX folder for mnist/fashion_mnist (default: EBNN_DATA_DIR)")
    ap.add_argument("--board", default=None, help=f"board budget: {', '.join(boards.board_names())}")
    ap.add_argument("--max-flash", type=int, default=None, help="bytes of flash (model data + runtime code)")
    ap.add_argument("--max-ram", type=int, default=None, help="bytes of RAM incl. the input buffer and the stack")
    ap.add_argument("--max-total", type=int, default=None, help="bytes of flash + RAM, the input buffer excluded")
    ap.add_argument("--max-ms", type=float, default=None, help="ms per inference on --cpu: by default for EVERY "
                    "image (the slowest probe image, --ms-stat max)")
    ap.add_argument("--ms-stat", default="max", choices=MS_STATS,
                    help="what --max-ms bounds (and the ms objective is): max (default): the slowest of the probe "
                    "images (the emulator runs each one; see --measure-images); mean: the mean over them. The cost "
                    "model (--measure model) has one figure for both")
    ap.add_argument("--cpu", default=None, choices=sorted(CPUS), help="CPU of the budget (default: the board's, "
                    "else cortex-m3)")
    ap.add_argument("--minimize-ms", action="store_true", help="add ms as an objective without a limit")
    ap.add_argument("--trials", type=int, default=20, help="trained trials the study should hold")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    ap.add_argument("--train-size", type=int, default=None, help="training images per trial (default: all)")
    ap.add_argument("--val-size", type=int, default=5000)
    ap.add_argument("--patience", type=int, default=2, help="epoch-level early stop of a trial")
    ap.add_argument("--final-epochs", type=int, default=20, help="epochs of the final retraining")
    ap.add_argument("--final-candidates", type=int, default=1,
                    help="retrain the K most accurate front trials; keep the best on validation (default 1)")
    ap.add_argument("--final-teacher", default=None, metavar="TEACHER.keras",
                    help="distil the final retraining from this trained model (e.g. examples/train_mnist.py "
                    "--preset teacher); the trials are not distilled")
    ap.add_argument("--distill-alpha", type=float, default=0.3, help="weight of the teacher term (default 0.3)")
    ap.add_argument("--distill-temperature", type=float, default=2.0, help="softmax temperature (default 2)")
    ap.add_argument("--no-final", dest="final", action="store_false",
                    help="only run trials (workers of a distributed search)")
    ap.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="minutes for this process's trials")
    ap.add_argument("--storage", default=None, help="Optuna storage: a file path (journal, default "
                    "OUT/search.journal), sqlite:///FILE or postgresql://user:pw@host/db")
    ap.add_argument("--study", default="ebnn-search", help="study name (resumed when it exists)")
    ap.add_argument("--sampler", default="tpe", choices=("tpe", "nsga2", "random"))
    ap.add_argument("--seed", type=int, default=None, help="sampler seed (default: different per process)")
    ap.add_argument("--measure", default="auto", choices=("auto", "model", "emulator"),
                    help="check flash/RAM/ms with the cost model, or exactly in simavr/QEMU (auto: the emulator "
                    "when its tools are installed, in a source checkout)")
    ap.add_argument("--measure-images", type=int, default=10,
                    help="validation images the emulator runs (with --ms-stat max: half the first ones, half the "
                    "inkiest; the slowest of them is the budgeted figure)")
    ap.add_argument("--final-measure-images", type=int, default=100,
                    help="test images the emulator runs on the final model (mean and slowest image in report.md)")
    ap.add_argument("--name", default="best", help="C name of the exported model")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    if args.board is None and args.max_flash is None and args.max_ram is None and args.max_total is None \
            and args.max_ms is None:
        ap.error("give a budget: --board, --max-flash, --max-ram, --max-total or --max-ms")
    try:
        res = search(args.dataset, board=args.board, cpu=args.cpu, max_flash=args.max_flash, max_ram=args.max_ram,
                     max_total=args.max_total, max_ms=args.max_ms, minimize_ms=args.minimize_ms, trials=args.trials,
                     epochs=args.epochs, time_budget=args.time_budget, storage=args.storage, study_name=args.study,
                     out=args.out, data_dir=args.data_dir, val_size=args.val_size, train_size=args.train_size,
                     patience=args.patience, final_epochs=args.final_epochs, final=args.final,
                     final_candidates=args.final_candidates, sampler=args.sampler,
                     seed=args.seed, name=args.name, measure=args.measure, measure_images=args.measure_images,
                     ms_stat=args.ms_stat, final_measure_images=args.final_measure_images,
                     space=SPACES[args.space],
                     final_teacher=args.final_teacher, distill_alpha=args.distill_alpha,
                     distill_temperature=args.distill_temperature)
    except KeyboardInterrupt:
        print("\ninterrupted: every finished trial is stored; run the same command again to resume", file=sys.stderr)
        return 130
    if res.front:
        print(pareto_table(res.front, Budget(**res.study.user_attrs["config"]["budget"])))
    else:
        print("no candidate fitting the budget was trained")
    print(f"{res.complete} trained trials, {res.infeasible} infeasible (never trained), {res.failed} failed; "
          f"output in {res.out}")
    return 0 if res.front else 1


if __name__ == "__main__":
    sys.exit(main())


class _CallableModule(type(sys)):
    """`keras_ebnn.search(...)` calls `search()`: the module is callable (it is also the CLI)."""

    def __call__(self, *args, **kwargs):
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
