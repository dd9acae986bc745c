"""Board budgets (`--board`, `--force`), the Arduino example sketch's inputs and the PlatformIO manifest.

The fast tests check the budget arithmetic, the CLI's refusals and the generated files. The tests
marked `targets` build the Arduino sketch of the shipped uno_mnist for the Uno with arduino-builder
and run it under simavr (tests/c/avr_sketch_runner.c: Serial in and out, peak SRAM by painting):
the printed classes must be the reference executor's for the embedded images, with and without
--verify-data and in the Serial-input variant; and the measured flash and peak SRAM must stay within
the budget, whose Arduino core figures (keras_ebnn/planning/boards.py) a stand-in model's sketch re-measures.
"""
import gzip
import json
import re
import shutil
import subprocess
import types
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.planning import boards
from keras_ebnn import convert
from keras_ebnn.exporters import arduino

MODELS = ROOT / "examples" / "models"
SAMPLE = ROOT / "examples" / "data" / "mnist_test_sample.npz"


@lru_cache(maxsize=None)
def _lowered(stem):
    from keras_ebnn.frontend.lowering import load_model, lower
    return lower(load_model(MODELS / f"{stem}.keras"), stem)


def _plan(stem, board):
    from keras_ebnn.exporters.c import memory_plan
    return memory_plan(_lowered(stem), target=boards.get(board).arch)


# --- the table --------------------------------------------------------------------------------------

def test_board_table_is_documented_and_plausible():
    assert {"uno", "nano", "mega", "nano33ble", "pico"} <= set(boards.BOARDS)
    for name, b in boards.BOARDS.items():
        assert name == b.name == name.lower()
        assert b.source and b.mcu and b.title and b.clock_mhz > 0
        assert 1024 <= b.sram_bytes <= b.flash_bytes  # every board here has more flash than SRAM
        assert b.arch in (None, "avr", "cortex-m0plus", "cortex-m3", "cortex-m4")
    assert boards.get("UNO") is boards.BOARDS["uno"]
    with pytest.raises(ValueError, match="known boards: .*nano33ble.*uno"):
        boards.get("uno3")


def test_avr_figures_match_the_installed_arduino_core():
    """The AVR rows are the Arduino core's own limits (boards.txt) where that file is installed."""
    txt = Path("/usr/share/arduino/hardware/arduino/avr/boards.txt")
    if not txt.is_file():
        pytest.skip("arduino-core-avr not installed")
    props = dict(ln.split("=", 1) for ln in txt.read_text().splitlines() if "=" in ln and not ln.startswith("#"))
    for name, key in (("uno", "uno"), ("nano", "nano.menu.cpu.atmega328"), ("mega", "mega.menu.cpu.atmega2560"),
                      ("leonardo", "leonardo")):
        assert int(props[f"{key}.upload.maximum_size"]) == boards.BOARDS[name].flash_bytes
        data_key = f"{key}.upload.maximum_data_size"
        data = props.get(data_key) or props[f"{name}.upload.maximum_data_size"]
        assert int(data) == boards.BOARDS[name].sram_bytes


def test_readme_shows_the_board_table():
    assert boards.table_markdown() in (ROOT / "README.md").read_text()


# --- the budget ---------------------------------------------------------------------------------------

def test_budget_counts_what_it_says():
    plan = _plan("uno_mnist", "uno")
    t = plan["totals"]
    core = boards.ARDUINO_CORE_OVERHEAD["avr"]
    bud = boards.budget(plan, "uno", "arduino", 10, sketch_flash=[("samples", 100)])
    assert bud.ram_needed == (t["arena_bytes"] + t["stack_bytes_estimate"] + t["input_bytes"] + 4 * 10
                              + core["ram_static"] + core["ram_stack"])
    assert bud.flash_needed == (t["flash_data_bytes"] + boards.code_bytes(plan, boards.get("uno"))
                                + core["flash"] + 100)
    assert boards.code_bytes(plan, boards.get("uno")) == round(t["code_bytes_estimate"] * boards.CODE_SCALE["avr"])
    # the C and Zephyr targets count the model only, and say what is left out
    c = boards.budget(plan, "uno", "c", 10)
    assert c.ram_needed == t["arena_bytes"] + t["stack_bytes_estimate"] + t["input_bytes"]
    assert "application" in c.text() and "not counted" in c.text()
    z = boards.budget(plan, "nano33ble", "zephyr", 10)
    assert "Zephyr kernel" in z.text()
    # boards whose Arduino core was not measured say so instead of guessing
    assert "not measured" in boards.budget(plan, "nano33ble", "arduino", 10).text()


def test_export_refuses_what_does_not_fit_and_writes_nothing(tmp_path):
    from keras_ebnn.frontdoor.exporting import BudgetError, export
    out = tmp_path / "m15"
    with pytest.raises(BudgetError) as exc:
        export(_lowered("m15_mnist"), out, name="m15_mnist", target="arduino", board="uno")
    plan = _plan("m15_mnist", "uno")
    msg = str(exc.value)
    assert f"activation arena {plan['totals']['arena_bytes']:,}" in msg
    assert f"of {boards.BOARDS['uno'].sram_bytes:,} B (OVER by" in msg
    assert not out.exists() and not list(tmp_path.iterdir())


def test_zephyr_export_refuses_a_board_it_does_not_fit(tmp_path, monkeypatch):
    from keras_ebnn.frontdoor.exporting import BudgetError, export
    small = boards.Board("tiny_m0", "test board", "none", "cortex-m0plus", 1, 8_192, 1_024, "test")
    monkeypatch.setitem(boards.BOARDS, "tiny_m0", small)
    with pytest.raises(BudgetError, match=r"(?s)RAM [\d,]+ B needed of 1,024 B \(OVER by .*Zephyr kernel"):
        export(_lowered("uno_mnist"), tmp_path / "z", name="uno_mnist", target="zephyr", board="tiny_m0")
    assert not (tmp_path / "z").exists()
    r = export(_lowered("uno_mnist"), tmp_path / "z", name="uno_mnist", target="zephyr", board="tiny_m0",
               force=True, check_c=False)
    assert r.forced and (tmp_path / "z" / "zephyr" / "module.yml").is_file()
    assert "does not fit board `tiny_m0`" in (tmp_path / "z" / "uno_mnist_report.md").read_text()


# --- the command line -----------------------------------------------------------------------------------

def _convert(capsys, *argv):
    code = convert.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_board_uno_refuses_m15_with_byte_counts(tmp_path, capsys):
    out = tmp_path / "m15"
    code, _, err = _convert(capsys, MODELS / "m15_mnist.keras", "-o", out, "--target", "arduino", "--board", "uno")
    assert code == 1
    plan = _plan("m15_mnist", "uno")
    bud = boards.budget(plan, "uno", "arduino", 10)
    assert bud.ram_needed > boards.BOARDS["uno"].sram_bytes
    # needed vs available, and every item counted, in bytes
    m = re.search(r"RAM ([\d,]+) B needed of 2,048 B \(OVER by ([\d,]+) B\)", err)
    assert m, err
    needed = int(m.group(1).replace(",", ""))
    assert needed >= bud.ram_needed and int(m.group(2).replace(",", "")) == needed - 2048
    for label in ("activation arena", "stack of the predict call chain", "input buffer", "scores array",
                  "Arduino core + Serial buffers"):
        assert label in err
    assert re.search(r"flash [\d,]+ B needed of 32,256 B", err) and "--force" in err
    assert not out.exists()


def test_cli_board_uno_accepts_uno_mnist(tmp_path, capsys):
    out = tmp_path / "uno"
    code, stdout, err = _convert(capsys, MODELS / "uno_mnist.keras", "-o", out, "--target", "arduino",
                                 "--board", "uno")
    assert code == 0, err
    assert "fits: board uno" in stdout and "WARNING" not in err
    report = (out / "uno_mnist_report.md").read_text()
    assert "## Board" in report and "RAM " in report and "WARNING" not in report


def test_cli_force_writes_with_a_loud_warning(tmp_path, capsys):
    out = tmp_path / "m15"
    code, stdout, err = _convert(capsys, MODELS / "m15_mnist.keras", "-o", out, "--target", "arduino",
                                 "--board", "uno", "--force")
    assert code == 0
    assert "WARNING: m15_mnist does not fit board uno" in err and "OVER by" in err
    assert "DOES NOT FIT" in stdout
    report = (out / "m15_mnist_report.md").read_text()
    assert "WARNING: this export does not fit board `uno`" in report
    assert (out / "examples" / "m15_mnist" / "m15_mnist.ino").is_file()


def test_cli_c_target_takes_a_board_too(tmp_path, capsys):
    code, _, err = _convert(capsys, MODELS / "m15_mnist.keras", "-o", tmp_path / "c", "--board", "uno")
    assert code == 1 and "target c" in err  # arena + stack + input alone exceed the Uno's 2 KB
    code, stdout, _ = _convert(capsys, MODELS / "m15_mnist.keras", "-o", tmp_path / "c", "--board", "mega")
    assert code == 0
    assert "fits: board mega" in stdout and "application" in stdout
    code, _, err = _convert(capsys, MODELS / "m15_mnist.keras", "-o", tmp_path / "c2", "--board", "nucleo_l031k6",
                            "--target", "zephyr")
    assert code == 0, err


@pytest.mark.parametrize("argv, message", [
    (["--board", "uno3"], "known boards: bluepill"),
    (["--force"], "--force needs --board"),
    (["--board", "uno", "--target", "zephyr"], "Zephyr has no AVR port"),
])
def test_cli_board_usage_errors_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        convert.main([str(MODELS / "uno_mnist.keras"), "-o", str(tmp_path / "o"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- the example sketch's inputs ---------------------------------------------------------------------------

def _sketch_arrays(text):
    """(samples (N, L) ints, labels) parsed back from a generated sketch."""
    body = text.split("SAMPLE_FLASH = {", 1)[1].split("};", 1)[0]
    rows = [[int(v) for v in re.findall(r"-?\d+", row)] for row in re.findall(r"\{([^{}]*)\}", body)]
    labels = [int(v) for v in re.search(r"labels\[N_SAMPLES\] SAMPLE_FLASH = \{([^}]*)\}", text).group(1).split(",")]
    return np.array(rows), labels


def test_sketch_embeds_the_shipped_mnist_images_without_verify_data(tmp_path):
    from keras_ebnn.frontdoor.exporting import export
    r = export(_lowered("uno_mnist"), tmp_path / "lib", name="uno_mnist", target="arduino")
    text = (tmp_path / "lib" / "examples" / "uno_mnist" / "uno_mnist.ino").read_text()
    data = np.load(SAMPLE)
    samples, labels = _sketch_arrays(text)
    n = arduino.MAX_SAMPLES
    assert np.array_equal(samples, data["x"][:n].reshape(n, -1))
    assert labels == [int(v) for v in data["y"][:n]]
    assert samples.any(axis=1).all()  # no all-zero placeholder
    assert "mnist_test_sample.npz" in text and "mnist_test_sample.npz" in r.sketch_inputs


def test_sketch_uses_verification_inputs_first(tmp_path):
    from keras_ebnn.frontdoor.exporting import export
    data = np.load(SAMPLE)
    x, y = data["x"][100:140], data["y"][100:140]
    export(_lowered("uno_mnist"), tmp_path / "lib", name="uno_mnist", target="arduino", verify_inputs=x,
           verify_labels=y, check_c=False)
    samples, labels = _sketch_arrays((tmp_path / "lib" / "examples" / "uno_mnist" / "uno_mnist.ino").read_text())
    assert np.array_equal(samples, x[:8].reshape(8, -1)) and labels == [int(v) for v in y[:8]]


def test_sketch_can_leave_random_verification_inputs_out(tmp_path):
    """EbnnExport verifies on random inputs when it has no data: those are not embedded."""
    from keras_ebnn.frontdoor.exporting import export
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    export(_lowered("uno_mnist"), tmp_path / "lib", name="uno_mnist", target="arduino", verify_inputs=x,
           check_c=False, sketch_verify_inputs=False)
    samples, labels = _sketch_arrays((tmp_path / "lib" / "examples" / "uno_mnist" / "uno_mnist.ino").read_text())
    assert np.array_equal(samples, np.load(SAMPLE)["x"][:8].reshape(8, -1))


def _fake_model(shape, dtype=np.uint8, classes=10):
    return types.SimpleNamespace(input=types.SimpleNamespace(shape=shape, dtype=dtype, length=int(np.prod(shape))),
                                 num_classes=classes)


def test_sketch_reads_serial_when_it_has_no_inputs(monkeypatch):
    images, labels, reason = arduino.choose_samples(_fake_model((16, 16, 1)))
    assert images is None and "16x16x1" in reason
    text = arduino.sketch(_fake_model((16, 16, 1)), "m", reason=reason)
    assert "ready" in text and "Serial.read()" in text and "Serial protocol" in text
    assert "samples[" not in text
    # an installed package has no examples/ folder: 28x28 models then read Serial too
    monkeypatch.setattr(arduino, "MNIST_SAMPLE", Path("/nonexistent/mnist_test_sample.npz"))
    assert arduino.choose_samples(_fake_model((28, 28, 1)))[0] is None
    # flash too small for even one sample: Serial
    assert arduino.choose_samples(_fake_model((28, 28, 1)), np.ones((3, 28, 28, 1), np.uint8), max_bytes=500)[0] is None


def test_float_models_get_scaled_samples_and_fewer_when_flash_is_short():
    images, labels, source = arduino.choose_samples(_fake_model((28, 28, 1), np.float32))
    data = np.load(SAMPLE)
    assert images.dtype == np.float32 and np.allclose(images, data["x"][:8] / 255.0) and "[0, 1]" in source
    per = arduino.samples_bytes(_fake_model((28, 28, 1), np.float32), 1)
    assert len(arduino.choose_samples(_fake_model((28, 28, 1), np.float32), max_bytes=3 * per + 1)[0]) == 3
    assert arduino.choose_samples(_fake_model((28, 28, 1), classes=2))[1] is None  # MNIST labels mean nothing


# A minimal Arduino API for building the sketch on the host: its non-AVR branch (how ARM and ESP32
# cores compile it), with Serial writing to stdout and reading from stdin.
ARDUINO_SHIM = r"""
#include <stdio.h>
#include <stdint.h>
#include <stddef.h>
#define F(s) (s)
static unsigned long micros(void) { return 0; }
struct HostSerial {
    void begin(unsigned long) {}
    void flush(void) { fflush(stdout); }
    int read(void) { return getchar(); }
    void print(const char *s) { fputs(s, stdout); }
    void print(char c) { putchar(c); }
    void print(int v) { printf("%d", v); }
    void print(unsigned long v) { printf("%lu", v); }
    void println(const char *s) { printf("%s\n", s); }
    void println(int v) { printf("%d\n", v); }
    void println(unsigned long v) { printf("%lu\n", v); }
};
static HostSerial Serial;
#include SKETCH
int main(void)
{
    setup();
#ifdef LOOPS
    for (int i = 0; i < LOOPS; i++)
        loop();
#endif
    return 0;
}
"""


@pytest.mark.skipif(not (shutil.which("g++") and shutil.which("gcc")), reason="no host g++/gcc")
@pytest.mark.parametrize("variant", ["embedded", "serial"])
def test_sketch_builds_and_classifies_on_the_host(variant, tmp_path):
    """The sketch's non-AVR code, built warning-free with the runtime under ASan/UBSan on the host."""
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor.exporting import export
    lib = tmp_path / "lib"
    export(_lowered("uno_mnist"), lib, name="uno_mnist", target="arduino", check_c=False)
    ino = lib / "examples" / "uno_mnist" / "uno_mnist.ino"
    x = np.load(SAMPLE)["x"]
    if variant == "embedded":
        images, stdin, loops = x[:8], b"", []
    else:
        ino.write_text(arduino.sketch(_lowered("uno_mnist"), "uno_mnist", reason="test"))
        images = x[300:303]
        stdin, loops = images.tobytes(), [f"-DLOOPS={len(images)}"]
    (tmp_path / "host.cpp").write_text(ARDUINO_SHIM)
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]
    objs = []
    for c in sorted((lib / "src").glob("*.c")):
        obj = tmp_path / f"{c.stem}.o"
        subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", *san, "-c", str(c), "-o", str(obj)],
                       check=True)
        objs.append(str(obj))
    exe = tmp_path / "sketch"
    proc = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", *san, f"-DSKETCH=\"{ino}\"",
                           *loops, f"-I{lib / 'src'}", str(tmp_path / "host.cpp"), *objs, "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = subprocess.run([str(exe)], input=stdin, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout.decode()
    ref = graph_reference.run(_lowered("uno_mnist"), images)["classes"]
    assert [c for _, c, _ in _printed(text)] == [int(v) for v in ref], text
    if variant == "embedded":
        labels = np.load(SAMPLE)["y"][:8]
        assert f"accuracy {int(np.sum(ref == labels))}/8" in text and "done" in text
    else:
        assert text.count("ready 784 uint8") == len(images)


# --- PlatformIO ---------------------------------------------------------------------------------------------

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def _check_library_json(lib, manifest):
    """The fields and types of PlatformIO's documented library.json schema
    (docs.platformio.org/en/latest/manifests/library-json; platformio-core's
    platformio/assets/schema/library.json): required name, version, description, keywords."""
    for key in ("name", "version", "description", "keywords"):
        assert key in manifest, key
    assert isinstance(manifest["name"], str) and 0 < len(manifest["name"]) <= 50
    assert not re.search(r"[:;/,@<>]", manifest["name"])
    assert isinstance(manifest["version"], str) and len(manifest["version"]) <= 20 and SEMVER.match(manifest["version"])
    assert isinstance(manifest["description"], str) and 0 < len(manifest["description"]) <= 255
    for key in ("keywords", "frameworks", "platforms", "headers"):
        value = manifest.get(key, [])
        items = value if isinstance(value, list) else [value]
        assert isinstance(value, (str, list)) and all(isinstance(v, str) for v in items)
    assert all(re.match(r"^[a-z\d\-_+. ]{1,50}$", k) for k in manifest["keywords"])
    assert all(re.match(r"^([a-z\d\-_]+|\*)$", f) for f in manifest["frameworks"] + manifest["platforms"])
    assert "arduino" in manifest["frameworks"]
    for h in manifest["headers"]:
        assert (lib / "src" / h).is_file()
    for ex in manifest["examples"]:
        assert set(ex) == {"name", "base", "files"} and re.match(r"^[a-zA-Z\d\-_/. ]+$", ex["name"])
        assert all((lib / ex["base"] / f).is_file() for f in ex["files"])
    assert set(manifest["export"]) <= {"include", "exclude"}
    assert all((lib / p).exists() for p in manifest["export"]["include"])
    # PlatformIO builds a library's src/ by default (build.srcDir "src"): the C sources are there
    assert "build" not in manifest and list((lib / "src").glob("*.c"))


def test_library_json_follows_platformio_schema(tmp_path):
    from keras_ebnn.frontdoor.exporting import export
    lib = tmp_path / "lib"
    export(_lowered("uno_mnist"), lib, name="uno_mnist", target="arduino")
    manifest = json.loads((lib / "library.json").read_text())
    _check_library_json(lib, manifest)
    assert manifest["name"] == "uno_mnist" and manifest["headers"] == ["uno_mnist.h"]
    props = dict(ln.split("=", 1) for ln in (lib / "library.properties").read_text().splitlines())
    assert props["version"] == manifest["version"] and props["name"] == manifest["name"]


def test_library_json_passes_platformios_own_validator(tmp_path):
    """PlatformIO's manifest parser and schema (the code behind `pio pkg pack`), when installed."""
    pytest.importorskip("platformio", reason="platformio is not installed (pip install platformio)")
    from platformio.package.manifest.parser import ManifestParserFactory
    from platformio.package.manifest.schema import ManifestSchema
    from keras_ebnn.frontdoor.exporting import export
    lib = tmp_path / "lib"
    export(_lowered("uno_mnist"), lib, name="uno_mnist", target="arduino")
    parsed = ManifestParserFactory.new_from_dir(str(lib)).as_dict()
    data = ManifestSchema().load_manifest(parsed)  # raises ManifestValidationError when invalid
    assert data["name"] == "uno_mnist" and data["frameworks"] == ["arduino"]
    assert data["examples"][0]["files"] == ["uno_mnist.ino"]


@pytest.mark.skipif(not shutil.which("pio"), reason="PlatformIO's pio command is not installed")
def test_pio_pkg_pack_accepts_the_library(tmp_path):
    """`pio pkg pack` validates library.json (offline) and packs what its export section names."""
    import tarfile
    from keras_ebnn.frontdoor.exporting import export
    lib = tmp_path / "lib"
    export(_lowered("uno_mnist"), lib, name="uno_mnist", target="arduino")
    proc = subprocess.run(["pio", "pkg", "pack", str(lib), "-o", str(tmp_path / "pkg.tar.gz")],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PLATFORMIO_CORE_DIR": str(tmp_path / "pio")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with tarfile.open(tmp_path / "pkg.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"library.json", "src/uno_mnist.h", "src/uno_mnist.c", "examples/uno_mnist/uno_mnist.ino"} <= names
    assert "uno_mnist_report.md" not in names


# --- on the Uno, under simavr ---------------------------------------------------------------------------

AB = ["arduino-builder", "-compile", "-hardware", "/usr/share/arduino-builder", "-hardware",
      "/usr/share/arduino/hardware", "-tools", "/usr/share/arduino-builder", "-fqbn", "arduino:avr:uno",
      "-prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=9"]
HAVE_UNO = bool(shutil.which("arduino-builder") and shutil.which("avr-nm") and shutil.which("gcc")
                and Path("/usr/share/arduino/hardware/arduino/avr/boards.txt").is_file()
                and Path("/usr/include/simavr/sim_avr.h").is_file())
uno = pytest.mark.skipif(not HAVE_UNO,
                         reason="arduino-builder / arduino-core-avr / avr-gcc / libsimavr-dev not installed")


@lru_cache(maxsize=1)
def _runner():
    import tempfile
    out = Path(tempfile.mkdtemp(prefix="ebnn-sketch-runner-")) / "runner"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I/usr/include/simavr",
                    f"-I{ROOT / 'bench' / 'targets' / 'avr'}", str(ROOT / "tests" / "c" / "avr_sketch_runner.c"), "-o", str(out), "-lsimavr", "-lelf"],
                   check=True, capture_output=True, text=True)
    return out


def _build_sketch(libraries, ino, work):
    """Compile the example sketch `ino` (copied into its own folder) for the Uno; returns (elf,
    flash bytes, static SRAM bytes) as arduino-builder reports them."""
    sketch = work / "sketch" / ino.stem
    sketch.mkdir(parents=True)
    shutil.copy(ino, sketch)
    build = work / "build"
    build.mkdir()
    proc = subprocess.run([*AB, "-libraries", str(libraries), "-build-path", str(build), str(sketch / ino.name)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    flash = int(re.search(r"Sketch uses (\d+) bytes", proc.stdout).group(1))
    ram = int(re.search(r"Global variables use (\d+) bytes", proc.stdout).group(1))
    return build / f"{ino.name}.elf", flash, ram


def _run_sketch(elf, work, serial_input=None, chunk=0):
    """Run under simavr; returns (output text, {static, stack, peak, ...})."""
    nm = subprocess.run(["avr-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    end = int(re.search(r"^([0-9a-f]+) \w _end$", nm, re.M).group(1), 16) & 0xFFFF
    cmd = [str(_runner()), str(elf), hex(end)]
    if serial_input is not None:
        (work / "serial.bin").write_bytes(serial_input)
        cmd += [str(work / "serial.bin"), str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    m = re.search(r"sram static=(\d+) stack=(\d+) peak=(\d+) ramend=(\d+) cycles=(\d+) state=(\d+)", proc.stdout)
    assert m, proc.stdout[-2000:] + proc.stderr[-2000:]
    stats = dict(zip(("static", "stack", "peak", "ramend", "cycles", "state"), map(int, m.groups())))
    return proc.stdout, stats


def _printed(text):
    return [(int(i), int(c), int(lab) if lab else None)
            for i, c, lab in re.findall(r"^image (\d+): class (\d+)(?: label (\d+))? time_us \d+", text, re.M)]


def _check_uno_run(lib, name, images, labels, work):
    """Build lib's example for the Uno, run it: classes = the reference executor's, accuracy over
    the labels, flash and peak SRAM within the --board uno budget."""
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.exporters.c import memory_plan
    elf, flash, static = _build_sketch(lib.parent, lib / "examples" / name / f"{name}.ino", work)
    text, stats = _run_sketch(elf, work)
    printed = _printed(text)
    ref = graph_reference.run(_lowered(name), images)["classes"]
    assert [c for _, c, _ in printed] == [int(v) for v in ref], text
    assert [lab for _, _, lab in printed] == [int(v) for v in labels]
    correct = int(np.sum(ref == labels))
    assert f"accuracy {correct}/{len(labels)}" in text and "done" in text
    plan = memory_plan(_lowered(name), target="avr")
    bud = boards.budget(plan, "uno", "arduino", 10, [("samples", arduino.samples_bytes(_lowered(name), len(images)))])
    print(f"\n{name} on the Uno: {correct}/{len(labels)} correct; flash {flash} B (budget {bud.flash_needed} B), "
          f"SRAM peak {stats['peak']} B = static {stats['static']} + stack {stats['stack']} "
          f"(budget {bud.ram_needed} B)")
    assert stats["static"] == static
    assert flash <= bud.flash_needed and stats["peak"] <= bud.ram_needed <= boards.BOARDS["uno"].sram_bytes
    return text


@pytest.mark.targets
@uno
def test_uno_sketch_classifies_the_shipped_sample(tmp_path, capsys):
    lib = tmp_path / "libraries" / "uno_mnist"
    code, _, err = _convert(capsys, MODELS / "uno_mnist.keras", "-o", lib, "--target", "arduino", "--board", "uno")
    assert code == 0, err
    data = np.load(SAMPLE)
    n = arduino.MAX_SAMPLES
    with capsys.disabled():
        _check_uno_run(lib, "uno_mnist", data["x"][:n], data["y"][:n], tmp_path)


def _write_idx(folder, x, y):
    """The four MNIST IDX .gz files (the sample stands in for both splits)."""
    folder.mkdir(parents=True)
    for images, labels in (("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                           ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
        with gzip.open(folder / images, "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (len(x), 28, 28)) + x.tobytes())
        with gzip.open(folder / labels, "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + len(y).to_bytes(4, "big") + y.tobytes())


@pytest.mark.targets
@uno
def test_uno_sketch_classifies_verify_data(tmp_path, capsys):
    data = np.load(SAMPLE)
    x, y = data["x"][200:400], data["y"][200:400]  # other images than the default sample
    _write_idx(tmp_path / "idx", x.reshape(-1, 28, 28), y)
    lib = tmp_path / "libraries" / "uno_mnist"
    code, _, err = _convert(capsys, MODELS / "uno_mnist.keras", "-o", lib, "--target", "arduino", "--board", "uno",
                            "--verify-data", tmp_path / "idx", "-q")
    assert code == 0, err
    n = arduino.MAX_SAMPLES
    with capsys.disabled():
        _check_uno_run(lib, "uno_mnist", x[:n], y[:n], tmp_path)


@pytest.mark.targets
@uno
def test_uno_serial_sketch_classifies_what_it_reads(tmp_path):
    """The Serial-input variant (written when there are no inputs to embed), fed 3 images over UART."""
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor.exporting import export
    lib = tmp_path / "libraries" / "uno_mnist"
    export(_lowered("uno_mnist"), lib, name="uno_mnist", target="arduino", board="uno")
    ino = lib / "examples" / "uno_mnist" / "uno_mnist.ino"
    ino.write_text(arduino.sketch(_lowered("uno_mnist"), "uno_mnist", reason="test"))
    x = np.load(SAMPLE)["x"][500:503]
    elf, _, _ = _build_sketch(lib.parent, ino, tmp_path)
    text, stats = _run_sketch(elf, tmp_path, serial_input=x.tobytes(), chunk=x[0].size)
    assert text.count("ready 784 uint8") >= len(x)
    ref = graph_reference.run(_lowered("uno_mnist"), x)["classes"]
    assert [(i, c) for i, c, _ in _printed(text)] == [(i, int(c)) for i, c in enumerate(ref)], text
    assert stats["peak"] <= boards.budget(_plan("uno_mnist", "uno"), "uno", "arduino", 10).ram_needed


STANDIN_H = """#ifndef EXACT_H
#define EXACT_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#define exact_INPUT_LEN 4u
#define exact_NUM_CLASSES 1
typedef uint8_t exact_input_t;
int exact_predict(const exact_input_t *input, float *scores);
#ifdef __cplusplus
}
#endif
#endif
"""
# A stand-in model: returns (stack bytes in use at its entry) * 128 + (how deep interrupts reached
# below that while it spun ~3 ms with interrupts on, Serial still transmitting the previous line).
STANDIN_C = """#include <avr/io.h>
#include "exact.h"
__attribute__((noinline)) int exact_predict(const exact_input_t *input, float *scores)
{
    uint8_t *sp = (uint8_t *)SP;
    uint16_t frame = (uint16_t)(RAMEND - (uint16_t)SP), depth = 0, i;
    for (i = 1; i <= 100; i++)
        sp[-(int)i] = 0x5A;
    for (volatile uint32_t n = 0; n < 6000u; n++)
        ;
    for (i = 1; i <= 100; i++)
        if (sp[-(int)i] != 0x5A)
            depth = i;
    scores[0] = (float)input[0];
    return (int)(frame * 128u + depth);
}
"""


@pytest.mark.targets
@uno
def test_arduino_core_overhead_bounds_a_stand_in_sketch(tmp_path):
    """Re-measures boards.ARDUINO_CORE_OVERHEAD["avr"] on the sketch generated for a stand-in model."""
    lib = tmp_path / "libraries" / "exact"
    (lib / "src").mkdir(parents=True)
    (lib / "src" / "exact.h").write_text(STANDIN_H)
    (lib / "src" / "exact.c").write_text(STANDIN_C)
    (lib / "library.properties").write_text(arduino.PROPERTIES.format(name="exact", version=arduino.VERSION))
    model = _fake_model((4, 1, 1), classes=1)
    images = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], np.uint8)
    (lib / "examples" / "exact").mkdir(parents=True)
    ino = lib / "examples" / "exact" / "exact.ino"
    ino.write_text(arduino.sketch(model, "exact", images, np.array([0, 1, 2]), "stand-in"))
    elf, flash, static = _build_sketch(lib.parent, ino, tmp_path)
    text, stats = _run_sketch(elf, tmp_path)
    answers = [c for _, c, _ in _printed(text)]
    assert len(answers) == 3, text
    frame = max(a // 128 for a in answers) - 4  # minus the stand-in's scores array (1 float)
    irq = max(a % 128 for a in answers)
    core = boards.ARDUINO_CORE_OVERHEAD["avr"]
    nm = subprocess.run(["avr-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    predict = int(re.search(r"^[0-9a-f]+ ([0-9a-f]+) [tT] exact_predict(?:\.\S+)?$", nm, re.M).group(1), 16)  # not inlined
    sketch_flash = flash - arduino.samples_bytes(model, len(images)) - predict
    print(f"\nArduino core on the Uno: flash {sketch_flash} B, static SRAM {static - 4} B, frame at the call "
          f"{frame} B, interrupts {irq} B (allowed: {core})")
    assert 0 < sketch_flash <= core["flash"]
    assert 0 < static - model.input.length <= core["ram_static"]
    assert irq > 0 and frame + irq <= core["ram_stack"]


@pytest.mark.targets
@uno
def test_what_uno_refuses_really_fails_on_the_uno(tmp_path, capsys):
    """m15_mnist forced onto the Uno: its stack runs into the static data (all 2,048 B in use) and the
    sketch prints no classification, which is why `--board uno` refuses it."""
    lib = tmp_path / "libraries" / "m15_mnist"
    code, _, err = _convert(capsys, MODELS / "m15_mnist.keras", "-o", lib, "--target", "arduino", "--board", "uno",
                            "--force", "-q")
    assert code == 0 and "WARNING" in err
    elf, _, static = _build_sketch(lib.parent, lib / "examples" / "m15_mnist" / "m15_mnist.ino", tmp_path)
    text, stats = _run_sketch(elf, tmp_path)
    with capsys.disabled():
        print(f"\nm15_mnist forced onto the Uno: static {static} B, stack reached {stats['stack']} B, "
              f"peak {stats['peak']} B of 2,048; printed {len(_printed(text))} classifications")
    assert stats["peak"] == boards.BOARDS["uno"].sram_bytes  # no painted byte left
    assert not _printed(text) and "done" not in text


def test_shipped_sketch_samples_are_the_mnist_sample():
    """exporters/mnist_sketch_samples.npz (package data) is the first images of the shipped sample."""
    from helpers.common import ROOT
    from keras_ebnn.exporters import arduino
    x, y = arduino.mnist_samples()
    full = np.load(ROOT / "examples" / "data" / "mnist_test_sample.npz")
    assert len(x) == arduino.MAX_SAMPLES
    assert np.array_equal(x, full["x"][:len(x)]) and np.array_equal(y, full["y"][:len(y)])
