"""Constant data AVR cannot read is refused, with the byte counts (issue 14, point 4a): pgm_read_* and
the byte kernels reach only the first 64 KB of flash, and avr-gcc refuses arrays over 32,767 B. The
Arduino export refuses (BudgetError), the C export stops an AVR build with an #error (checked with
avr-gcc -mmcu=atmega2560, a board with 256 KB of flash), other targets are unaffected."""
import shutil
import subprocess

import numpy as np
import pytest

from keras_ebnn.frontdoor import host
from keras_ebnn.ir import graph_reference
from keras_ebnn.ir.blocks import (BinaryConvBlock, BinaryDenseBlock, ConvGeometry, InputConvBlock, InputSpec,
                               LoweredModel, OutputDenseBlock)
from keras_ebnn.exporters.arduino import export_arduino
from keras_ebnn.exporters.c import CTYPE_BYTES, avr_reach_problems, block_data, export_c, memory_plan
from keras_ebnn.frontdoor.exporting import BudgetError


def _geom(in_shape, k, stride=1):
    h, w, _ = in_shape
    o = ((h - k) // stride + 1, (w - k) // stride + 1)
    return ConvGeometry(in_shape=in_shape, kernel=(k, k), strides=(stride, stride), pad=(0, 0), conv_shape=o,
                        out_hw=o)


def big_dense_model():
    """uint8 28x28x1 -> 3x3 input conv, 32 channels (21,632 bits) -> dense 21,632 -> 32 (86,528 B of
    weights in one array) -> output 32 -> 10."""
    rng = np.random.default_rng(0)
    spec = InputSpec(shape=(28, 28, 1), mode="uint8")
    conv = InputConvBlock(_geom((28, 28, 1), 3), spec, rng.random((32, 3, 3, 1)) < 0.5,
                          rng.integers(-300, 300, 32), np.zeros(32, bool), ["conv"])
    dense = BinaryDenseBlock(rng.random((32, 21632)) < 0.5, rng.integers(-100, 100, 32), ["big_dense"])
    out = OutputDenseBlock(rng.random((10, 32)) < 0.5, np.ones(10, np.float32), np.zeros(10, np.float32))
    return LoweredModel("bigdense", spec, [conv, dense, out])


def many_arrays_model():
    """Every array under 32,767 B, 70 KB in total: uint8 3x3x1 -> 1x1 input conv, 500 channels -> two
    1x1 binary convs of 500 channels (32,000 B of weights each) -> output 4,500 -> 10."""
    rng = np.random.default_rng(1)
    spec = InputSpec(shape=(3, 3, 1), mode="uint8")
    c = 500
    blocks = [InputConvBlock(_geom((3, 3, 1), 1), spec, rng.random((c, 1, 1, 1)) < 0.5, rng.integers(-100, 100, c),
                             np.zeros(c, bool), ["stem"])]
    for k in range(2):
        blocks.append(BinaryConvBlock(_geom((3, 3, c), 1), rng.random((c, 1, 1, c)) < 0.5,
                                      rng.integers(-20, 20, c), np.zeros(c, bool), [f"pw{k}"]))
    blocks.append(OutputDenseBlock(rng.random((10, 9 * c)) < 0.5, np.ones(10, np.float32), np.zeros(10, np.float32)))
    return LoweredModel("wide", spec, blocks)


def test_problems_carry_the_byte_counts():
    model = big_dense_model()
    data = memory_plan(model)["totals"]["flash_data_bytes"]
    assert data > 65536
    problems = avr_reach_problems(model, "bigdense")
    assert problems[0].startswith(f"bigdense: {data:,} B of constant model data + 256 B of runtime tables")
    assert "exceed the 65,536 B" in problems[0]
    assert problems[1] == ("bigdense_b1_w (bigdense: block 1 (binary_dense from big_dense)) is 86,528 B: AVR arrays "
                           "are limited to 32,767 B")
    wide = many_arrays_model()
    problems = avr_reach_problems(wide, "wide")
    assert len(problems) == 1 and "exceed the 65,536 B" in problems[0]
    assert max(arr.size * CTYPE_BYTES[t] for b in wide.blocks for t, arr in block_data(b).values()) == 32000
    small = many_arrays_model()
    del small.blocks[2]  # one 32,000 B array less: 38 KB
    assert avr_reach_problems(small, "small") == []


@pytest.mark.parametrize("build", [big_dense_model, many_arrays_model])
def test_arduino_export_refuses(build, tmp_path):
    model = build()
    with pytest.raises(BudgetError, match=r"exceed the 65,536 B of flash that AVR reads") as err:
        export_arduino(model, tmp_path / "lib", model.name)
    assert f"{memory_plan(model)['totals']['flash_data_bytes']:,} B of constant model data" in str(err.value)
    assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize("build", [big_dense_model, many_arrays_model])
def test_c_export_runs_on_host_and_stops_an_avr_build(build, tmp_path):
    model = build()
    out = tmp_path / "c"
    export_c(model, out, model.name)
    if host.find_cc() is not None:  # the host build is unaffected and exact
        x = np.random.default_rng(3).integers(0, 256, (4,) + model.input.shape).astype(np.uint8)
        classes, logits = host.predict_c(model, out, model.name, x)
        ref = graph_reference.run(model, x)
        assert np.array_equal(classes, ref["classes"]) and np.array_equal(logits, ref["logits"])
    if not shutil.which("avr-gcc"):
        pytest.skip("avr-gcc not installed")
    proc = subprocess.run(["avr-gcc", "-mmcu=atmega2560", "-std=c99", "-Os", f"-I{out}", "-c",
                           str(out / f"{model.name}.c"), "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
    assert proc.returncode != 0
    data = memory_plan(model)["totals"]["flash_data_bytes"]
    assert f"#error \"{model.name}: {data:,} B of constant model data + 256 B of runtime tables" in proc.stderr, \
        proc.stderr[-2000:]
