"""Fuzz the converter with broken model files (issue 14): every one fails cleanly and quickly.

From a small valid model saved as .keras and .h5, a seeded generator makes more than 200 broken
files: truncations at random offsets, byte bursts flipped where the format must notice them (inside
the .keras archive's CRC-protected member data and its record signatures; inside the HDF5 file's
structure signatures), and mutations of the model configuration (config.json in the archive, the
model_config attribute of the .h5) chosen so that the result is no longer a loadable model: unknown
classes and modules, Lambda injection, wrong types, missing keys, huge or wrong sizes, deep nesting,
invalid JSON. (A flip in an HDF5 weight value or a layer name gives another valid model, so those
are not generated: converting it correctly is not a failure.)

Each file goes through `keras_ebnn.convert.main` in one worker process (one TensorFlow start-up for
all files; fd 1 and fd 2 captured per file) and a few through real `python -m keras_ebnn.convert`
processes. Per file: exit code 1 or 2; stderr is exactly one `error:` line (plus the supported-layers
line only for an unsupported-layer error); no traceback; no TensorFlow/absl/oneDNN/CUDA log line;
nothing on stdout; no output folder; done within TIME_BOUND seconds.
"""
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import pytest

from keras_ebnn import import_larq

ROOT = Path(__file__).resolve().parent.parent
TIME_BOUND = 10.0  # seconds per file in the worker
NOISE = re.compile(r"absl|oneDNN|onednn|cuda|cuInit|Traceback|^[IWEF]\d{4} |tensorflow/core|"
                   r"^WARNING|^\s+File \"", re.IGNORECASE | re.MULTILINE)
SUPPORTED_LINE = "Supported layers:"

WORKER = r"""
import json, os, sys, tempfile, time
from keras_ebnn import convert
paths = json.load(open(sys.argv[1]))
# Warm-up outside the timed loop: TensorFlow's start-up and first model build (a few seconds) are
# not what the per-file time bound is about; the real-process test covers the start-up's output.
assert convert.main([sys.argv[3], "-o", sys.argv[3] + ".warmup", "-q"], isolate=False) == 0
with open(sys.argv[2], "w") as log:
    for path in paths:
        out = path + ".out"
        captured = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
        sys.stdout.flush(); sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(captured[0].fileno(), 1); os.dup2(captured[1].fileno(), 2)
        start = time.monotonic()
        try:
            code = convert.main([path, "-o", out], isolate=False)  # (isolation: test_fuzz_isolated.py)
        except SystemExit as exc:
            code = exc.code
        except BaseException as exc:
            import traceback; traceback.print_exc(); code = "exception"
        seconds = time.monotonic() - start
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(saved[0], 1); os.dup2(saved[1], 2); os.close(saved[0]); os.close(saved[1])
        text = []
        for f in captured:
            f.seek(0); text.append(f.read().decode("utf-8", "replace")); f.close()
        log.write(json.dumps(dict(path=path, code=code, stdout=text[0], stderr=text[1],
                                  seconds=seconds, out_exists=os.path.exists(out))) + "\n")
        log.flush()
"""


def small_model(tf, lq):
    L = tf.keras.layers
    sign = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    return tf.keras.Sequential([
        L.InputLayer((12, 12, 1)), L.Rescaling(1 / 255.0),
        lq.layers.QuantConv2D(4, 3, **sign), L.MaxPooling2D(2), L.BatchNormalization(),
        L.Flatten(), lq.layers.QuantDense(10, input_quantizer="ste_sign", **sign),
        L.BatchNormalization(), L.Activation("softmax")])


# ---------------------------------------------------------------------------------------------------
# Mutations


def truncated(data, rng):
    return data[:rng.randrange(0, len(data))]


def flipped(data, start, end, rng):
    """Flip a burst of 1-4 bytes inside [start, end) (CRC32 detects every burst up to 32 bits)."""
    length = rng.randint(1, min(4, end - start))
    pos = rng.randrange(start, end - length + 1)
    out = bytearray(data)
    for i in range(pos, pos + length):
        out[i] ^= rng.randint(1, 255)
    return bytes(out)


def zip_regions(path):
    """(start, end) of each member's stored data and of each zip record signature."""
    data = Path(path).read_bytes()
    regions = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
            extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            if info.compress_size:
                regions.append((start, start + info.compress_size))
    for sig in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"):
        regions += [(m.start(), m.start() + 4) for m in re.finditer(re.escape(sig), data)]
    return regions


def h5_regions(data):
    """(start, end) of the HDF5 file signature and of its B-tree / heap / symbol-node signatures."""
    regions = [(0, 8)]
    for sig in (b"TREE", b"HEAP", b"SNOD"):
        regions += [(m.start(), m.start() + 4) for m in re.finditer(sig, data)]
    return regions


def _layers(cfg):
    return cfg["config"]["layers"]


def _objects(node, found):
    """Every dict with a class_name below `node` that is not a layer (quantizers, initializers...)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and "class_name" in value and key != "config":
                found.append(value)
            _objects(value, found)
    elif isinstance(node, list):
        for value in node:
            _objects(value, found)
    return found


def _sized(cfg):
    return [lay for lay in _layers(cfg) if "filters" in lay["config"] or "units" in lay["config"]]


def _set_size(lay, value):
    lay["config"]["filters" if "filters" in lay["config"] else "units"] = value


LAMBDA = {"class_name": "Lambda", "config": {"name": "injected", "function": ["4wEAAAAA", None, None],
                                              "function_type": "lambda", "module": "__main__",
                                              "arguments": {}}}


def mutate_config(cfg, rng):
    """Return (label, text) of a configuration that no longer describes a loadable model."""
    cfg = json.loads(json.dumps(cfg))
    layers = _layers(cfg)
    ops = ["unknown_layer", "unknown_object", "module", "lambda", "registered", "activation",
           "drop_layer_key", "drop_model_key", "layers_type", "layer_config_type", "size_type",
           "huge", "size_off_by_one", "kernel_type", "input_shape_type", "deep", "invalid_json",
           "not_object", "not_utf8", "class_type"]
    op = rng.choice(ops)
    i = rng.randrange(len(layers))
    if op == "unknown_layer":
        layers[i]["class_name"] = rng.choice(["EvilLayer", "Dense2", "os.system", "", "Lambda "])
    elif op == "unknown_object":
        rng.choice(_objects(cfg, []))["class_name"] = rng.choice(["MyQuantizer", "Sign", "eval"])
    elif op == "module":
        layers[i]["module"] = rng.choice(["os", "subprocess", "evil_module", "builtins", "kerasx"])
    elif op == "lambda":
        layers.insert(rng.randrange(1, len(layers)), json.loads(json.dumps(LAMBDA)))
    elif op == "registered":
        layers[i]["registered_name"] = rng.choice(["evil>QuantDense", "Custom>Thing", "MyLayer"])
    elif op == "activation":
        layers[-1]["config"]["activation"] = rng.choice(["evil_fn", "os>system", "softmax2"])
    elif op == "drop_layer_key":
        del layers[i]["class_name"]  # (without "config", .keras loads a default layer: a valid model)
    elif op == "drop_model_key":
        del cfg[rng.choice(["class_name", "config"])]
    elif op == "layers_type":
        cfg["config"]["layers"] = rng.choice(["layers", 7, None, {"a": 1}, [1, 2]])
    elif op == "layer_config_type":
        layers[i]["config"] = rng.choice(["x", 3, [], None])
    elif op == "size_type":
        _set_size(rng.choice(_sized(cfg)), rng.choice(["many", [4], {"n": 4}, None, -3, 0]))
    elif op == "huge":
        value = rng.choice([10 ** rng.randint(9, 40), 2 ** 31, 2 ** 63, 2 ** 64 + 1])
        if rng.random() < 0.7:
            _set_size(rng.choice(_sized(cfg)), value)
        else:
            layers[0]["config"]["batch_input_shape"] = [None, value, value, 1]
    elif op == "size_off_by_one":  # loads as a different model whose weights no longer fit
        lay = rng.choice(_sized(cfg))
        _set_size(lay, lay["config"].get("filters", lay["config"].get("units")) + rng.choice([-1, 1, 7]))
    elif op == "kernel_type":
        next(lay for lay in layers if "kernel_size" in lay["config"])["config"]["kernel_size"] = \
            rng.choice(["3", [3], {"h": 3}, [3, 3, 3, 3], [0, 0]])
    elif op == "input_shape_type":
        layers[0]["config"]["batch_input_shape"] = rng.choice(["12x12", [None, "a", 12, 1], 5])
    elif op == "deep":
        depth = rng.choice([100, 1000, 100000])
        return op, '{"class_name": "Sequential", "config": {"layers": ' + "[" * depth + "]" * depth + "}}"
    elif op == "invalid_json":
        text = json.dumps(cfg)
        cut = rng.randrange(1, len(text) - 1)
        return op, text[:cut] + rng.choice(["", "}", "\x00", "'", ",,"])
    elif op == "not_object":
        return op, rng.choice(["[]", "3", '"model"', "null", ""])
    elif op == "not_utf8":
        return op, b"\xff\xfe" + json.dumps(cfg).encode()
    elif op == "class_type":
        layers[i]["class_name"] = rng.choice([5, None, ["Dense"], {"x": 1}])
    return op, json.dumps(cfg)


# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{path: kind} of the mutated files (seeded), with the two valid originals."""
    tf, lq = import_larq()
    tf.keras.backend.clear_session()  # layer names, hence the mutations, do not depend on test order
    tf.keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("fuzz")
    model = small_model(tf, lq)
    keras_path, h5_path = base / "valid.keras", base / "valid.h5"
    model.save(keras_path)
    model.save(h5_path)
    rng = random.Random(14)
    files = {}

    def add(kind, data):
        suffix = ".keras" if kind.startswith("keras") else ".h5"
        path = base / f"m{len(files):03d}_{kind}{suffix}"
        path.write_bytes(data)
        files[str(path)] = kind

    kdata, hdata = keras_path.read_bytes(), h5_path.read_bytes()
    for _ in range(30):
        add("keras_truncated", truncated(kdata, rng))
        add("h5_truncated", truncated(hdata, rng))
    kregions, hregions = zip_regions(keras_path), h5_regions(hdata)
    for _ in range(30):
        add("keras_flipped", flipped(kdata, *rng.choice(kregions), rng))
        add("h5_flipped", flipped(hdata, *rng.choice(hregions), rng))
    with zipfile.ZipFile(keras_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    kcfg = json.loads(members["config.json"])
    with h5py.File(h5_path, "r") as f:
        hcfg = json.loads(f.attrs["model_config"])
    for _ in range(60):
        op, text = mutate_config(kcfg, rng)
        path = base / f"m{len(files):03d}_keras_json_{op}.keras"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, text if name == "config.json" else data)
        files[str(path)] = f"keras_json_{op}"
    for _ in range(40):
        op, text = mutate_config(hcfg, rng)
        path = base / f"m{len(files):03d}_h5_json_{op}.h5"
        path.write_bytes(hdata)
        with h5py.File(path, "r+") as f:
            f.attrs["model_config"] = text if isinstance(text, str) else text.decode("latin-1")
        files[str(path)] = f"h5_json_{op}"
    return base, keras_path, h5_path, files


def check_failure(path, code, stdout, stderr, out_exists):
    """Problems with one failed conversion (empty list when it failed as required)."""
    problems = []
    lines = stderr.splitlines()
    if code not in (1, 2):
        problems.append(f"exit code {code!r}")
    if len(lines) not in (1, 2) or not lines[0].startswith("error: "):
        problems.append(f"{len(lines)} stderr lines")
    elif len(lines) == 2 and (not lines[1].startswith(SUPPORTED_LINE) or "model file" in lines[0]):
        problems.append("second stderr line is not the supported-layers hint of an unsupported layer")
    if sum(line.startswith("error:") for line in lines) != 1:
        problems.append("not exactly one error: line")
    if NOISE.search(stderr) or NOISE.search(stdout):
        problems.append("traceback or TensorFlow noise")
    if stdout.strip():
        problems.append("output on stdout")
    if out_exists or any(p.name.startswith(Path(path).name + ".out") for p in Path(path).parent.iterdir()):
        problems.append("output folder written")
    return problems


def test_fuzzed_model_files_fail_cleanly(corpus, tmp_path):
    base, keras_path, h5_path, files = corpus
    assert len(files) >= 200
    paths = sorted(files)
    (tmp_path / "paths.json").write_text(json.dumps(paths))
    (tmp_path / "worker.py").write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "paths.json"),
                           str(log), str(keras_path)], capture_output=True, text=True, env=env, timeout=600)
    results = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert proc.returncode == 0 and len(results) == len(paths), (
        f"worker died after {len(results)} of {len(paths)} files (next: "
        f"{paths[len(results)] if len(results) < len(paths) else '-'}): {proc.stderr[-2000:]}")
    failures = []
    for r in results:
        problems = check_failure(r["path"], r["code"], r["stdout"], r["stderr"], r["out_exists"])
        if r["seconds"] > TIME_BOUND:
            problems.append(f"took {r['seconds']:.1f} s")
        if problems:
            failures.append(f"{Path(r['path']).name}: {', '.join(problems)}\n  stderr: {r['stderr'][:400]!r}")
    assert not failures, f"{len(failures)} of {len(results)} files:\n" + "\n".join(failures[:20])
    slowest = max(results, key=lambda r: r["seconds"])
    print(f"\n{len(results)} fuzzed files, all failed cleanly; slowest {slowest['seconds']:.2f} s "
          f"({Path(slowest['path']).name}); total {sum(r['seconds'] for r in results):.1f} s")
    kinds = {files[r["path"]].split("_json_")[0] for r in results}
    assert kinds >= {"keras_truncated", "h5_truncated", "keras_flipped", "h5_flipped", "keras", "h5"}
    # The mutations exercise both the safe-load check and Keras's own loader errors.
    errors = [r["stderr"] for r in results]
    assert sum("could not read model file" in e for e in errors) > 20
    assert sum("could not load model file" in e for e in errors) > 5
    assert sum("Refusing to load it" in e for e in errors) > 10


def test_fuzzed_files_in_real_processes(corpus, tmp_path):
    """A real `python -m keras_ebnn.convert` start-up shows no TensorFlow noise, failing or not."""
    base, keras_path, h5_path, files = corpus
    rng = random.Random(15)
    picks = [rng.choice(sorted(p for p, k in files.items() if k.startswith(prefix)))
             for prefix in ("keras_truncated", "h5_flipped", "keras_json", "h5_json")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for path in picks:
        proc = subprocess.run([sys.executable, "-m", "keras_ebnn.convert", path, "-o", path + ".out"],
                              capture_output=True, text=True, env=env, timeout=120)
        problems = check_failure(path, proc.returncode, proc.stdout, proc.stderr,
                                 os.path.exists(path + ".out"))
        assert not problems, f"{Path(path).name}: {problems}: {proc.stderr!r}"
    out = tmp_path / "ok"
    proc = subprocess.run([sys.executable, "-m", "keras_ebnn.convert", str(keras_path), "-o", str(out),
                           "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr
    assert (out / "valid.h").is_file()
