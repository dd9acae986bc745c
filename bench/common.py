"""Shared pieces of the benchmark commands: the shipped models, exporting, and BENCHMARKS.md sections."""
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCHMARKS = ROOT / "BENCHMARKS.md"

# shipped models: name -> (file, dataset)
MODELS = {
    "paper_mnist": ("examples/models/paper_mnist.keras", "mnist"),
    "tiny_mnist": ("examples/models/tiny_mnist.keras", "mnist"),
    "uno_mnist": ("examples/models/uno_mnist.keras", "mnist"),
    "m15_mnist": ("examples/models/m15_mnist.keras", "mnist"),
    "m15_fashion": ("examples/models/m15_fashion.keras", "fashion_mnist"),
    # found by keras_ebnn.search, trained by bench/presets.py (keras_ebnn.train.models.SEARCHED)
    "m15_search_mnist": ("examples/models/m15_search_mnist.keras", "mnist"),
    "uno_search_mnist": ("examples/models/uno_search_mnist.keras", "mnist"),
}


def available_models(names=None):
    out = {}
    for name, (path, dataset) in MODELS.items():
        if (names is None or name in names) and (ROOT / path).is_file():
            out[name] = (ROOT / path, dataset)
    return out


def shipped_models(names=None):
    """available_models plus every other examples/models/*.keras file (a model shipped after MODELS was
    last edited; sorted by name, after MODELS' order): its dataset is Fashion-MNIST when its name says
    "fashion", else MNIST."""
    out = available_models(names)
    for path in sorted((ROOT / "examples" / "models").glob("*.keras")):
        if path.stem not in MODELS and (names is None or path.stem in names):
            out[path.stem] = (path, "fashion_mnist" if "fashion" in path.stem else "mnist")
    return out


def load_export(name, path, out_root):
    """(keras model, lowered model, C export folder) of a shipped model."""
    from keras_ebnn.exporters.c import export_c
    from keras_ebnn.frontend.lowering import load_model, lower
    model = load_model(path)
    lowered = lower(model, name)
    out = Path(out_root) / name
    export_c(lowered, out, name)
    return model, lowered, out


def test_set(dataset):
    from keras_ebnn.train import datasets
    return datasets.load(dataset, split="test")


def sample_images(dataset, n=100):
    """The first n test images of `dataset` when EBNN_DATA_DIR is set, else of the shipped MNIST sample
    (examples/data/mnist_test_sample.npz: a stand-in input for cost measurements, whatever the dataset)."""
    import os
    if os.environ.get("EBNN_DATA_DIR"):
        return test_set(dataset)[0][:n]
    return np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")["x"][:n]


def model_args(doc, default_models, argv=None):
    """Parse a benchmark command's --models (comma-separated shipped models, default `default_models`)
    and --no-write (do not update BENCHMARKS.md); the help is doc's first line. Prints doc."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default=default_models)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    print(doc)
    return args


def write_section(key, text, command, after=None):
    """Replace the section `key` of BENCHMARKS.md; a new one goes right after the section `after` when
    that exists, else at the end."""
    body = f"<!-- bench:{key} -->\n{text.rstrip()}\n\nProduced by: `{command}`\n<!-- /bench:{key} -->"
    doc = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# keras-ebnn benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{key} -->.*?<!-- /bench:{key} -->", re.S)
    end = f"<!-- /bench:{after} -->" if after else None
    if pattern.search(doc):
        doc = pattern.sub(lambda m: body, doc)
    elif end and end in doc:
        doc = doc.replace(end, end + "\n\n" + body, 1)
    else:
        doc = doc.rstrip() + "\n\n" + body + "\n"
    BENCHMARKS.write_text(doc)


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def median_us(fn, repeat):
    import time
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)


# --------------------------------------------------------------------------------------------------
# exporters/measured.py: the measured tables, written by the scripts that measure them

MEASURED = ROOT / "exporters" / "measured.py"
MEASURED_DOC = '''"""Measured figures of the runtime kernels. GENERATED: do not edit by hand; the bench script named
for each table measures it and rewrites this file (bench/common.py write_measured).

COMPILERS: the compilers the tables were measured with (`CC --version`, first line's version).
CODE_BYTES (exporters/c.py): machine code of each fused-block kernel with its static helpers, and of the
  generated predict function ("predict" + "predict_per_block" per kernel call), Cortex-M3 -mthumb -O2
  -ffunction-sections (`arm-none-eabi-nm -S` of the kernel objects and of a generated NAME.o); "common":
  the popcount helpers; "output_dense" includes the integer binary32 logits code of FPU-less cores.
  No script measures it yet (measured by hand with the command above).
GRAPH_CODE_BYTES (exporters/graph_c.py): the same per graph kernel entry point and per group of static
  helpers they share; "soft_float": libgcc's single-precision routines an FPU-less core pulls in (a
  linked Cortex-M3 program). No script measures it yet (measured by hand as CODE_BYTES).
STACK_BYTES (exporters/c.py; `python bench/stack.py`): stack bound of each fused-block kernel's deepest
  call chain and of what the generated predict functions add, per target and build ("default": no -D;
  "small": -DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1), the maximum over -O1, -O2, -O3, -Os of keras_ebnn.planning.stackcheck
  on the shipped models, rounded up to 16 B.
GRAPH_STACK_BY_TARGET (exporters/graph_c.py; `python bench/graph_stack.py`): the same for the graph
  kernel files (maximum over both builds, whose options they do not read); "elementwise_libm" /
  "conv_pool_libm": with tanh / sigmoid (EBNN_ACT_LIBM=1).
Other compilers or versions can differ: `python -m keras_ebnn.planning.stackcheck OUT --target T -O2 [-D...]`
bounds the stack of the build you ship; the target's size tool gives its exact code size.
"""
'''
MEASURED_TABLES = ("COMPILERS", "CODE_BYTES", "GRAPH_CODE_BYTES", "STACK_BYTES", "GRAPH_STACK_BY_TARGET")


def _render(value, indent=0, width=110):
    """A dict literal: on one line if it fits; else a dict of numbers as lines of items filled up to
    `width`, a dict of dicts one key per line (nested dicts indented)."""
    flat = repr(value)
    if not isinstance(value, dict) or indent * 4 + len(flat) <= width:
        return flat
    pad = "    " * (indent + 1)
    if not any(isinstance(v, dict) for v in value.values()):
        lines, line = [], pad
        for k, v in value.items():
            item = f"{k!r}: {v!r},"
            if line != pad and len(line) + 1 + len(item) > width:
                lines.append(line)
                line = pad
            line += ("" if line == pad else " ") + item
        items = lines + [line]
    else:
        items = [f"{pad}{k!r}: {_render(v, indent + 1, width)}," for k, v in value.items()]
    return "{\n" + "\n".join(items) + "\n" + "    " * indent + "}"


def render_measured(tables):
    """The text of exporters/measured.py holding `tables` (name -> dict, every name of MEASURED_TABLES)."""
    return MEASURED_DOC + "".join(f"\n{name} = {_render(tables[name])}\n" for name in MEASURED_TABLES)


def compiler_version(cc):
    """The version of compiler `cc` (the last token of the first line of `cc --version` that looks like
    a version), or None when it is not installed."""
    import shutil
    import subprocess
    if shutil.which(cc) is None:
        return None
    first = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    versions = re.findall(r"\b\d+\.\d+(?:\.\d+)?\b", first)
    return versions[-1] if versions else first


def write_measured(**tables):
    """Rewrite exporters/measured.py with the given tables replaced (the others kept), recording the
    versions of the compilers used (COMPILERS: arm-none-eabi-gcc, avr-gcc)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_measured", MEASURED)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    current = {name: getattr(mod, name) for name in MEASURED_TABLES}
    current.update(tables)
    compilers = dict(current["COMPILERS"])
    for cc in ("arm-none-eabi-gcc", "avr-gcc"):
        version = compiler_version(cc)
        if version is not None:
            compilers[cc] = version
    current["COMPILERS"] = compilers
    MEASURED.write_text(render_measured(current))
    print(f"wrote {MEASURED.relative_to(ROOT)} ({', '.join(tables)}; compilers {compilers})")
