"""Arduino Uno (ATmega328P, 16 MHz) under simavr: build an exported model with avr-gcc, run it in
simavr's cycle-accurate core through our runner (avr/runner.c, linked with libsimavr) and measure
exact cycles per inference.

Method: the driver (avr/driver.c) writes 1 and 2 to the GPIOR0 register around every NAME_predict
call; the runner records simavr's cycle counter at those writes. The cost of the marker pair alone
(a calibration build with nothing in between) is subtracted. Test images are streamed into the
firmware through GPIOR2 reads, so any number of them can be run; they are copied into a RAM input
buffer of NAME_INPUT_LEN values, as an application would. The driver also paints free RAM to report
the stack's high-water mark.
"""
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "avr"
MCU_FLAGS = ["-mmcu=atmega328p", "-DF_CPU=16000000UL"]
FLASH_BYTES, SRAM_BYTES = 32768, 2048


def available():
    return all(shutil.which(t) for t in ("avr-gcc", "avr-size", "avr-nm", "gcc")) and \
        Path("/usr/include/simavr/sim_avr.h").is_file()


@lru_cache(maxsize=1)
def runner():
    out = Path(tempfile.mkdtemp(prefix="ebnn-simavr-")) / "runner"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I/usr/include/simavr", str(HERE / "runner.c"),
                    "-o", str(out), "-lsimavr", "-lelf"], check=True, capture_output=True, text=True)
    return out


def build(export_dir, name, workdir, opt="-Os", empty=False, extra_flags=()):
    export_dir = Path(export_dir)
    elf = Path(workdir) / f"{name}_avr{'_empty' if empty else ''}.elf"
    cmd = ["avr-gcc", *MCU_FLAGS, "-std=gnu99", "-Wall", "-Wextra", "-Werror", opt, "-ffunction-sections",
           "-fdata-sections", f"-I{export_dir}", f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL={name}",
           *(["-DPREDICT_EMPTY"] if empty else []), *extra_flags,
           *sorted(str(p) for p in export_dir.glob("*.c")), str(HERE / "driver.c"), "-Wl,--gc-sections",
           "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"AVR build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return elf


def size(elf):
    out = subprocess.run(["avr-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {p[0]: int(p[1]) for p in (ln.split() for ln in out.splitlines()) if len(p) >= 2 and p[0].startswith(".")}
    return {"text": sec.get(".text", 0), "data": sec.get(".data", 0), "bss": sec.get(".bss", 0)}


def run(elf, images, dtype, timeout=1800):
    images = np.asarray(images)
    data = np.array([len(images)], "<u2").tobytes() + images.astype(np.uint8).reshape(len(images), -1).tobytes()
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run([str(runner()), str(elf), f.name], capture_output=True, text=True, timeout=timeout)
    out = proc.stdout
    m = re.search(r"cycles marked=(\d+) pairs=(\d+) total=(\d+)", out)
    if proc.returncode != 0 or m is None or "DONE" not in out:
        raise RuntimeError(f"simavr run failed ({proc.returncode}):\n{out[-2000:]}\n{proc.stderr[-2000:]}")
    stack = int(re.search(r"^S (\d+)", out, re.M).group(1))
    each = [int(v) for v in re.search(r"^P([ \d]*)$", out, re.M).group(1).split()]
    return [ln for ln in out.splitlines() if ln.startswith("R ")], \
        {"marked": int(m.group(1)), "pairs": int(m.group(2)), "total": int(m.group(3)), "stack": stack,
         "each": each}


def build_and_run(export_dir, name, images, num_classes=None, dtype=np.uint8, workdir=None, opt="-Os"):
    """Returns classes, logits, cycles per inference (markers subtracted), ms at 16 MHz, sizes, and
    each image's cycles in "cycles_per_image" (the kernels' time depends on the data: e.g. the binary
    conv stops a filter's pooling window once its bit is 1). num_classes defaults to
    NAME_NUM_CLASSES from the exported header."""
    from .cortexm import header_num_classes, model_flash, parse, symbols
    if num_classes is None:
        num_classes = header_num_classes(export_dir, name)
    work = Path(workdir or tempfile.mkdtemp(prefix="ebnn-avr-"))
    work.mkdir(parents=True, exist_ok=True)
    elf = build(export_dir, name, work, opt)
    lines, counters = run(elf, images, dtype)
    classes, logits = parse(lines, num_classes)
    empty_elf = build(export_dir, name, work, opt, empty=True)
    _, empty = run(empty_elf, images[:3], dtype)
    marker = empty["marked"] / max(empty["pairs"], 1)
    cycles = counters["marked"] / max(counters["pairs"], 1) - marker
    each = [c - marker for c in counters["each"]]
    sz = size(elf)
    syms = symbols(elf, "avr-nm")
    flash = model_flash(elf, empty_elf, name, size, nm="avr-nm")
    return {"classes": classes, "logits": logits, "images": len(images), "cycles_per_inference": cycles,
            "ms_per_inference_16mhz": cycles / 16e3, "size": sz, "flash_bytes": sz["text"] + sz["data"],
            "sram_static_bytes": sz["data"] + sz["bss"], "stack_high_water_bytes": counters["stack"],
            "symbols": {k: v[1] for k, v in syms.items() if k.startswith(f"{name}_")},
            "code_bytes": flash["code"], "libgcc_helpers": flash["helpers"], "model_flash": flash["flash"],
            "elf": str(elf), "cycles_per_image": each}
