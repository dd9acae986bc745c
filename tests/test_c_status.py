"""The generated NAME_predict never answers silently wrong (issue 14, point 4b).

Two hand-built models have a block that the byte kernels (EBNN_BYTE_KERNELS, the AVR default) cannot
run: a binary conv of 32,769 taps (accumulators beyond int16: the issue's stale-class case) and a uint8
7x7x3 input conv (accumulators up to 37,485).
  * The binary conv's model runs anyway: its NAME.c compiles the generic binary conv in as the byte
    kernel's fallback (EBNN_BINARY_CONV_FALLBACK), checked against the reference in a byte-kernel build.
  * The input conv's model stops a byte-kernel build (and an AVR build, where even the generic integer
    input conv is 16-bit) with an #error naming the block and what to do.
  * Forced past both (fallback off; the #error removed, as in an export made before a kernel's limits
    changed), NAME_predict returns -2 with the scores untouched instead of a class from stale buffers.
Bad arguments return -1, scores untouched.
"""
import re
import shutil
import subprocess

import numpy as np
import pytest

from keras_ebnn.frontdoor import host
from keras_ebnn.ir import graph_reference
from keras_ebnn.ir.blocks import (BinaryConvBlock, ConvGeometry, InputConvBlock, InputSpec, LoweredModel,
                               OutputDenseBlock)
from keras_ebnn.exporters.c import export_c, generate

pytestmark = pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]

MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include "@NAME@.h"

int main(void)
{
    static @NAME@_input_t input[@NAME@_INPUT_LEN];
    static uint32_t scratch[@NAME@_SCRATCH_SIZE / 4u + 2u];
    float scores[@NAME@_NUM_CLASSES];
    int k, untouched = 1;
    uint32_t i;
    for (i = 0; i < @NAME@_INPUT_LEN; i++)
        input[i] = (@NAME@_input_t)(i % 7u);
    for (k = 0; k < @NAME@_NUM_CLASSES; k++)
        scores[k] = 12345.0f;
    printf("null %d\n", @NAME@_predict(NULL, scores));
    printf("scratch_null %d\n", @NAME@_predict_scratch(input, scores, NULL));
    printf("misaligned %d\n", @NAME@_predict_scratch(input, scores, (char *)scratch + 1));
    for (k = 0; k < @NAME@_NUM_CLASSES; k++)
        untouched &= scores[k] == 12345.0f;
    printf("untouched_after_bad_args %d\n", untouched);
    printf("predict %d\n", @NAME@_predict(input, scores));
    for (k = 0; k < @NAME@_NUM_CLASSES; k++)
        untouched &= scores[k] == 12345.0f;
    printf("untouched %d\n", untouched);
    return 0;
}
"""


def _geometry(in_shape, k):
    h, w, _ = in_shape
    return ConvGeometry(in_shape=in_shape, kernel=(k, k), strides=(1, 1), pad=(0, 0),
                        conv_shape=(h - k + 1, w - k + 1), out_hw=(h - k + 1, w - k + 1))


def big_binary_conv_model():
    """uint8 3x3x1 -> 1x1 input conv, 3641 channels -> 3x3 binary conv of 32,769 taps, 4 channels
    (accumulators up to 32,769: not int16) -> output dense 4 -> 3."""
    rng = np.random.default_rng(0)
    spec = InputSpec(shape=(3, 3, 1), mode="uint8")
    c = 3641
    first = InputConvBlock(_geometry((3, 3, 1), 1), spec, rng.random((c, 1, 1, 1)) < 0.5,
                           rng.integers(-100, 100, c), np.zeros(c, bool), ["stem"])
    conv = BinaryConvBlock(_geometry((3, 3, c), 3), rng.random((4, 3, 3, c)) < 0.5, np.array([-50, 0, 10, 60]),
                           np.zeros(4, bool), ["wide_conv"])
    out = OutputDenseBlock(rng.random((3, 4)) < 0.5, np.float32([1.0, 0.5, 2.0]), np.float32([0.0, 0.25, -1.0]))
    return LoweredModel("wide", spec, [first, conv, out]), 1, "binary_conv"


def big_input_conv_model():
    """uint8 9x9x3 -> 7x7 input conv (147 taps: accumulators up to 37,485, not int16), 8 channels ->
    output dense 72 -> 3."""
    rng = np.random.default_rng(1)
    spec = InputSpec(shape=(9, 9, 3), mode="uint8")
    first = InputConvBlock(_geometry((9, 9, 3), 7), spec, rng.random((8, 7, 7, 3)) < 0.5,
                           rng.integers(-2000, 2000, 8), np.zeros(8, bool), ["stem7x7"])
    out = OutputDenseBlock(rng.random((3, 72)) < 0.5, np.float32([1.0, 0.5, 2.0]), np.float32([0.0, 0.25, -1.0]))
    return LoweredModel("stem", spec, [first, out]), 0, "input_conv"


MODELS = {"binary_conv": big_binary_conv_model, "input_conv": big_input_conv_model}


def _build_main(out, name, tmp_path, flags=()):
    main = tmp_path / "main.c"
    main.write_text(MAIN.replace("@NAME@", name))
    exe = tmp_path / "status_main"
    proc = subprocess.run([host.find_cc(), *STRICT, "-O1", *SANITIZE, *flags, f"-I{out}", *host.c_sources(out),
                           str(main), "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict((k, int(v)) for k, v in (ln.split() for ln in run.stdout.splitlines()))


def _strip_checks(out, name):
    """Remove the generated #error checks (and their #if/#endif), as if the export had none."""
    path = out / f"{name}.c"
    text = path.read_text()
    stripped = re.sub(r"#if [^\n]*\n#error [^\n]*\n#endif\n", "", text)
    assert stripped != text
    path.write_text(stripped)


def _check_default_build(model, out, tmp_path, flags=()):
    x = np.random.default_rng(2).integers(0, 256, (6,) + model.input.shape).astype(np.uint8)
    classes, logits = host.predict_c(model, out, model.name, x, opt="-O1", sanitize=True, extra_flags=list(flags))
    ref = graph_reference.run(model, x)
    assert np.array_equal(classes, ref["classes"]) and np.array_equal(logits, ref["logits"])


def test_byte_binary_conv_falls_back_on_the_generic_code(tmp_path):
    model, index, _ = big_binary_conv_model()
    out = tmp_path / "out"
    export_c(model, out, model.name)
    assert "#define EBNN_BINARY_CONV_FALLBACK 1" in (out / "wide.c").read_text()
    _check_default_build(model, out, tmp_path)
    _check_default_build(model, out, tmp_path, flags=["-DEBNN_BYTE_KERNELS=1"])
    if shutil.which("avr-gcc"):  # the AVR build compiles (generic binary conv included)
        proc = subprocess.run(["avr-gcc", "-mmcu=atmega1284p", *STRICT, "-Os", f"-I{out}", "-c", str(out / "wide.c"),
                               "-o", str(tmp_path / "wide.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        syms = subprocess.run(["avr-nm", str(tmp_path / "wide.o")], capture_output=True, text=True).stdout
        assert "ebnn_binary_conv32" in syms or "build_patch" in syms
    # a model without such a block does not carry the generic code into its byte build
    small, _, _ = big_input_conv_model()
    assert "EBNN_BINARY_CONV_FALLBACK" not in generate(small, "stem")[1]


def test_unsupported_block_stops_the_byte_kernel_build(tmp_path):
    model, index, kind = big_input_conv_model()
    out = tmp_path / "out"
    export_c(model, out, model.name)
    _check_default_build(model, out, tmp_path)
    with pytest.raises(RuntimeError) as err:
        host.build_runner(out, model.name, opt="-O1", extra_flags=["-DEBNN_BYTE_KERNELS=1"])
    msg = str(err.value)
    assert f"#error \"{model.name}: block {index} ({kind} from " in msg, msg[-2000:]
    assert "-DEBNN_BYTE_KERNELS=0" in msg
    res = _build_main(out, model.name, tmp_path)  # default build: a class
    assert res["predict"] >= 0 and res["untouched"] == 0
    assert (res["null"], res["scratch_null"], res["misaligned"], res["untouched_after_bad_args"]) == (-1, -1, -1, 1)


@pytest.mark.parametrize("which", sorted(MODELS))
def test_kernel_failure_is_reported_not_a_stale_class(which, tmp_path):
    """Without the build-time checks, the byte kernel's refusal reaches the caller: -2, scores
    untouched (before, predict went on over stale buffers and returned a class)."""
    model, _, _ = MODELS[which]()
    out = tmp_path / "out"
    export_c(model, out, model.name)
    flags = ["-DEBNN_BYTE_KERNELS=1"]
    if which == "input_conv":
        _strip_checks(out, model.name)
    else:
        flags.append("-DEBNN_BINARY_CONV_FALLBACK=0")
    res = _build_main(out, model.name, tmp_path, flags=flags)
    assert res["predict"] == -2 and res["untouched"] == 1, res


@pytest.mark.skipif(not shutil.which("avr-gcc"), reason="avr-gcc not installed")
def test_avr_build_names_the_block(tmp_path):
    """On AVR the 16-bit integer input conv cannot run the 7x7x3 uint8 stem: the AVR build stops
    with a message naming the block (and the byte kernels' message too)."""
    model, _, _ = big_input_conv_model()
    out = tmp_path / "out"
    export_c(model, out, model.name)
    proc = subprocess.run(["avr-gcc", "-mmcu=atmega328p", "-std=c99", "-Os", f"-I{out}", "-c", str(out / "stem.c"),
                           "-o", str(tmp_path / "stem.o")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "stem: block 0 (input_conv from stem7x7): accumulators reach 37485, beyond the int16" in proc.stderr
