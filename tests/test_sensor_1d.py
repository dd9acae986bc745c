"""Real sensor data end to end (examples/sensor_1d): the UEA .ts reader, and a 1-D BNN trained briefly
on JapaneseVowels (the copy bundled in the optional `aeon` package), exported as C, whose classes
on the whole 370-utterance test split equal Keras's -- on the host, and (marker `targets`) on a
Cortex-M3 under QEMU and an ATmega328P under simavr, and the exported Arduino sketch (built with
arduino-builder, run in simavr) prints the host C's classes for its embedded test cases.

The reader tests run everywhere (they write their own .ts files); the dataset tests skip without
aeon (`pip install --no-deps aeon`), the target tests without the cross tools and emulators.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.frontdoor import host
from keras_ebnn.train import uea
from keras_ebnn.train.datasets import DatasetNotFoundError

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "sensor_1d"))
import sensor_1d as example  # noqa: E402
from bench.targets import avr, cortexm  # noqa: E402

HAVE_AEON = uea.aeon_data_dir() is not None
needs_aeon = pytest.mark.skipif(not HAVE_AEON, reason="aeon (optional dependency: the UEA datasets) not installed")
NAME = "vowels"

TS = """# a comment
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1,2,3:4,5,6:up
7,8:9,10:down
"""


def test_read_ts_pads_with_the_last_value(tmp_path):
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"Toy_{split}.ts").write_text(TS)
    (xtr, ytr), (xte, yte) = uea.load("Toy", data_dir=tmp_path)
    assert xtr.shape == (2, 3, 2) and xtr.dtype == np.float32  # (cases, steps, channels)
    assert xtr[0].tolist() == [[1, 4], [2, 5], [3, 6]]
    assert xtr[1].tolist() == [[7, 9], [8, 10], [8, 10]]  # 2 steps, padded by repeating the last
    assert ytr.tolist() == [0, 1] and np.array_equal(xte, xtr)
    lo, hi = uea.uint8_scaling(xtr)
    assert lo.tolist() == [1, 4] and hi.tolist() == [8, 10]
    q = uea.to_uint8(np.array([[[1, 4], [8, 10], [100, -5]]], np.float32), lo, hi)
    assert q.dtype == np.uint8 and q.tolist() == [[[0, 0], [255, 255], [255, 0]]]  # saturates


@pytest.mark.parametrize("text, message", [
    (TS.replace("7,8:9,10:down", "7,8:9:down"), "different lengths"),
    (TS.replace("7,8:9,10:down", "7,?:9,10:down"), "missing values"),
    (TS.replace("7,8:9,10:down", "7,8:9,10:sideways"), "not in @classLabel"),
    (TS.replace("@classLabel true up down", "@classLabel false"), "not a classification file"),
    (TS.replace("1,2,3:4,5,6:up", "1,2,3:4,5,6:7,8,9:up"), "3 channels"),
])
def test_read_ts_refuses_what_it_does_not_understand(tmp_path, text, message):
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"Toy_{split}.ts").write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        uea.load("Toy", data_dir=tmp_path)
    assert "Toy_TRAIN.ts" in str(info.value)


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Nope_TRAIN.ts"):
        uea.load("Nope", data_dir=tmp_path)


@needs_aeon
def test_japanese_vowels_is_the_archive_split():
    data = example.load_data("JapaneseVowels")
    assert data["x_train"].shape == (270, 29, 12) and data["x_test"].shape == (370, 29, 12)
    assert data["x_train"].dtype == np.uint8 and data["num_classes"] == 9
    assert np.bincount(data["y_train"]).tolist() == [30] * 9
    # the archive's test split: 24 to 88 utterances per speaker
    assert np.bincount(data["y_test"]).tolist() == [31, 35, 88, 44, 29, 24, 40, 50, 29]
    assert data["x_train"].min(axis=(0, 1)).tolist() == [0] * 12
    assert data["x_train"].max(axis=(0, 1)).tolist() == [255] * 12


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small 1-D BNN trained 2 epochs on JapaneseVowels, exported as C (target c, verified on the
    test split by export itself), and the host build's classes on the whole test split."""
    if not HAVE_AEON:
        pytest.skip("aeon (optional dependency: the UEA datasets) not installed")
    if host.find_cc() is None:
        pytest.skip("no host C compiler")
    import keras_ebnn
    data = example.load_data("JapaneseVowels")
    model = example.train_model(data, widths=(8, 16, 16), epochs=2, seed=1)
    x, y = data["x_test"], data["y_test"]
    out = tmp_path_factory.mktemp("sensor") / "c"
    res = keras_ebnn.export(model, out, name=NAME, target="c", verify_inputs=x, verify_labels=y)
    classes, logits = host.run_runner(host.build_runner(out, NAME, sanitize=True), x, res.lowered.num_classes,
                                      np.uint8)
    return model, data, out, classes, logits, res


@needs_aeon
def test_short_training_exports_and_host_c_equals_keras(exported):
    model, data, out, classes, _, res = exported
    x, y = data["x_test"], data["y_test"]
    keras = example.keras_classes(model, x)
    assert np.array_equal(example.reference_classes(model, x), keras)
    assert np.array_equal(classes, keras)  # host C under ASan/UBSan
    assert res.c_checked and res.c_matches_reference
    assert np.mean(keras == y) > 1 / 9  # 2 epochs: well above chance, not a tuned figure


@pytest.mark.targets
@needs_aeon
@pytest.mark.skipif(not cortexm.available(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_cortex_m3_equals_host(exported, tmp_path):
    _, data, out, classes, logits, _ = exported
    r = cortexm.build_and_run(out, NAME, data["x_test"], cpu="cortex-m3", workdir=tmp_path)
    assert r["images"] == len(classes) and np.array_equal(r["classes"], classes)
    assert 0 < r["instructions_per_inference"] < 5e6


@pytest.mark.targets
@needs_aeon
@pytest.mark.skipif(not avr.available(), reason="avr-gcc / simavr not installed")
def test_atmega328p_equals_host(exported, tmp_path):
    _, data, out, classes, _, _ = exported
    r = avr.build_and_run(out, NAME, data["x_test"], workdir=tmp_path)
    assert r["images"] == len(classes) and np.array_equal(r["classes"], classes)
    assert r["flash_bytes"] <= avr.FLASH_BYTES
    assert r["sram_static_bytes"] + r["stack_high_water_bytes"] < avr.SRAM_BYTES


@pytest.mark.targets
@needs_aeon
@pytest.mark.skipif(not (shutil.which("arduino-builder") and shutil.which("simavr")
                         and os.path.isdir("/usr/share/arduino/hardware")),
                    reason="arduino-builder / arduino-core-avr / simavr not installed")
def test_arduino_sketch_prints_the_host_classes(exported, tmp_path):
    """The Uno library of examples/sensor_1d (board budget checked by export) built with
    arduino-builder and run in simavr: its sketch classifies the first test cases of the
    class-interleaved order (one per speaker) like the host C does."""
    import re

    import keras_ebnn
    from test_targets import ARDUINO
    model, data, _, classes, _, _ = exported
    order = example.class_interleaved(data["y_test"])
    x, y = data["x_test"][order], data["y_test"][order]
    lib = tmp_path / "libraries" / NAME
    keras_ebnn.export(model, lib, name=NAME, target="arduino", verify_inputs=x, verify_labels=y, board="uno")
    sketch = tmp_path / "sketch" / NAME
    sketch.mkdir(parents=True)
    shutil.copy(lib / "examples" / NAME / f"{NAME}.ino", sketch)
    build = tmp_path / "build"
    build.mkdir()
    proc = subprocess.run([ARDUINO[0], "-compile", *ARDUINO[1:], "-libraries", str(tmp_path / "libraries"),
                           "-build-path", str(build), str(sketch / f"{NAME}.ino")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sim = subprocess.run(["simavr", "-m", "atmega328p", "-f", "16000000", str(build / f"{NAME}.ino.elf")],
                         capture_output=True, text=True, timeout=600)
    text = sim.stdout + sim.stderr
    printed = [(int(i), int(c), int(lab)) for i, c, lab in re.findall(r"image (\d+): class (\d+) label (\d+)", text)]
    assert "done" in text and len(printed) == 8, text[-2000:]
    assert sorted({lab for _, _, lab in printed}) == list(range(8))  # one case of each of 8 speakers
    assert [c for _, c, _ in printed] == classes[order[:8]].tolist()
