"""Cortex-M bare metal under QEMU: build an exported model with arm-none-eabi-gcc, run it on
`qemu-system-arm -M mps2-an385` (Cortex-M3, and M0+ code, which is a subset), `mps2-an386`
(Cortex-M4F), `mps2-an500` (Cortex-M7 with double-precision FPU) or `mps3-an547` (Cortex-M55 with
Helium) with semihosting, and count
executed instructions exactly with our TCG plugin.

Method: the driver brackets every NAME_predict call with two marker functions; the plugin
(cortexm/insn_count.c) counts every executed guest instruction from the start marker's first
instruction to the stop marker's first instruction. The marker pair's own cost (measured by
running it with nothing in between) is subtracted, so the figure is the instructions of
NAME_predict and everything it calls, including the call itself. Deterministic: same ELF, same
inputs, same count.
"""
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "cortexm"
CPUS = {
    "cortex-m0plus": (["-mcpu=cortex-m0plus", "-mthumb"], "mps2-an385"),
    "cortex-m3": (["-mcpu=cortex-m3", "-mthumb"], "mps2-an385"),
    "cortex-m4": (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], "mps2-an386"),
    # Cortex-M7 with its double-precision FPU (FPv5-D16), as on STM32F7/H7 parts
    "cortex-m7": (["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"], "mps2-an500"),
    # Cortex-M55 (Armv8.1-M) with Helium (MVE, integer and float: -mcpu=cortex-m55 implies +mve.fp) and
    # its FPU; the runtime's MVE kernels (runtime_c/arm/) are compiled in when __ARM_FEATURE_MVE is set
    "cortex-m55": (["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"], "mps3-an547"),
}
CC = "arm-none-eabi-gcc"
# memory maps (flash, RAM) the linker script is sized for, per QEMU machine. "microbit" (nRF51, a real
# ARMv6-M Cortex-M0 core, 256 KB flash, 16 KB RAM) is a stricter home for Cortex-M0+ builds than the
# M3 machine: it rejects ARMv7-M instructions (e.g. from a wrongly chosen libgcc multilib).
# mps2-an500 (Cortex-M7) has the same 4 MB ZBT SSRAM1 at 0x0 and SSRAM2/3 at 0x20000000 as an385/an386.
# mps3-an547 (Cortex-M55): the 512 KB ITCM at 0x0 holds code and constants, the 512 KB DTCM at 0x20000000
# data and stack.
MACHINES = {"mps2-an385": ("4M", "4M"), "mps2-an386": ("4M", "4M"), "mps2-an500": ("4M", "4M"),
            "mps3-an547": ("512K", "512K"), "microbit": ("256K", "16K")}


def available():
    return all(shutil.which(t) for t in (CC, "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "gcc"))


@lru_cache(maxsize=1)
def plugin():
    """Build the instruction-counting plugin once per process."""
    out = Path(tempfile.mkdtemp(prefix="ebnn-qemu-plugin-")) / "insn_count.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(HERE / "insn_count.c")], check=True, capture_output=True, text=True)
    return out


def _float_literal(v):
    """A C float literal of v (9 significant digits: the same float32); non-finite values as 0.0f."""
    if not np.isfinite(v):
        return "0.0f"
    text = f"{float(v):.9g}"
    return text + (".0f" if not any(c in text for c in ".e") else "f")  # "0f" would not be C


def images_header(path, images, ctype):
    images = np.asarray(images)
    n = images.shape[0]
    flat = images.reshape(n, -1)
    rows = []
    for img in flat:
        if ctype == "float":
            vals = ", ".join(_float_literal(v) for v in img)
        else:
            vals = ", ".join(str(int(v)) for v in img)
        rows.append("    {" + vals + "}")
    path.write_text(f"#define N_IMAGES {n}u\nstatic const {ctype} images[{n}][{flat.shape[1]}] = {{\n"
                    + ",\n".join(rows) + "\n};\n")


def linker_script(work, machine):
    """link.ld with the memory map of `machine` (see MACHINES), written into `work`."""
    flash, ram = MACHINES[machine]
    text = (HERE / "link.ld").read_text()
    sized = text.replace("ORIGIN = 0x00000000, LENGTH = 4M", f"ORIGIN = 0x00000000, LENGTH = {flash}") \
        .replace("ORIGIN = 0x20000000, LENGTH = 4M", f"ORIGIN = 0x20000000, LENGTH = {ram}")
    assert machine in ("mps2-an385", "mps2-an386", "mps2-an500") or sized != text
    out = Path(work) / f"link_{machine}.ld"
    out.write_text(sized)
    return out


def build(export_dir, name, images, cpu="cortex-m3", opt="-O2", workdir=None, empty=False, flags=(), machine=None):
    """Compile the export + driver into an ELF. `empty=True` builds the marker-calibration ELF;
    `flags` are extra compiler options (e.g. the runtime's -DEBNN_* settings); `machine` (default: the
    cpu's, see CPUS) sizes the memory map."""
    cpu_flags, default_machine = CPUS[cpu]
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ebnn-{cpu}-"))
    work.mkdir(parents=True, exist_ok=True)
    ld = linker_script(work, machine or default_machine)
    export_dir = Path(export_dir)
    head = (export_dir / f"{name}.h").read_text().split(f"{name}_input_t")[0][-40:]
    ctype = "uint8_t" if "uint8_t" in head else "int8_t" if "int8_t" in head else "float"  # int8: quantize="int8"
    images_header(work / "images.h", images, ctype)
    elf = work / f"{name}_{cpu}{'_empty' if empty else ''}.elf"
    cmd = [CC, *cpu_flags, "-std=c99", "-Wall", "-Wextra", "-Werror", opt, "-ffunction-sections", "-fdata-sections",
           f"-I{export_dir}", f"-I{work}", f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL={name}",
           *(["-DPREDICT_EMPTY"] if empty else []), *flags,
           *sorted(str(p) for p in export_dir.glob("*.c")), str(HERE / "driver.c"), str(HERE / "startup.c"),
           "-nostartfiles", "--specs=nano.specs", "-T", str(ld), "-Wl,--gc-sections",
           "-o", str(elf), "-lc", "-lgcc"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Cortex-M build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return elf


def symbols(elf, nm="arm-none-eabi-nm", with_type=False):
    """{name: (address, size)} (or (address, size, type letter)) of an ELF's or object's symbols."""
    out = subprocess.run([nm, "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            entry = (int(parts[0], 16), int(parts[1], 16), parts[2])
        elif len(parts) == 3 and parts[0] != "U":
            entry = (int(parts[0], 16), 0, parts[1])
        else:
            continue
        syms[parts[-1]] = entry if with_type else entry[:2]
    return syms


def model_flash(elf, empty_elf, name, size_fn=None, nm="arm-none-eabi-nm"):
    """What the model adds to a program's flash, from two ELFs linked with --gc-sections: `elf`
    calls NAME_predict, `empty_elf` (the PREDICT_EMPTY calibration build) does not, so the linker
    drops the model's data, the runtime kernels and every library routine only they use.

    Returns {"flash": bytes added (text + initialised data of `elf` minus those of `empty_elf`; the
    drivers' own `images` arrays and the size change of the driver's functions excluded), "data": the
    model's const objects (NAME_b* symbols), "code": flash - data (runtime and predict code, alignment padding, and the helpers below),
    "helpers": {routine: bytes} for the library routines (soft-float, 64-bit arithmetic, libc) linked
    only into `elf`}.
    Helper bytes are counted once per address (libgcc's float add/subtract entries share one body,
    so their nm sizes overlap). Routines the rest of a program links anyway (memset, which the C
    start-up code uses to clear .bss) are not counted."""
    size_fn = size_fn or size
    full, empty = symbols(elf, nm, True), symbols(empty_elf, nm, True)

    def flash(path, syms):
        sz = size_fn(path)
        return sz["text"] + sz["data"] - (syms["images"][1] if "images" in syms else 0)

    # the driver's own functions (in both builds) also differ a little: the call and the printing of
    # real scores; that is application code, not the model's
    driver = sum(v[1] - empty[k][1] for k, v in full.items() if k in empty and k != "images" and v[2] in "tT")
    added = flash(elf, full) - flash(empty_elf, empty) - driver
    data = sum(v[1] for k, v in full.items() if k.startswith(f"{name}_b") and v[2] in "tTrRdD")
    only = sorted((v[0], v[0] + v[1], k) for k, v in full.items()
                  if v[2] in "tTwW" and v[1] > 0 and k not in empty and not k.startswith(f"{name}_")
                  and (k.startswith("__") or k.startswith("mem")))
    helpers, covered = {}, 0  # union of the address ranges, attributed to the first name at each start
    for start, end, k in only:
        if end > covered:
            helpers[k] = end - max(start, covered)
            covered = end
    return {"flash": added, "data": data, "code": added - data, "helpers": helpers}


def size(elf):
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("."):
            sec[parts[0]] = int(parts[1])
    return {"text": sec.get(".text", 0) + sec.get(".ARM.exidx", 0), "data": sec.get(".data", 0),
            "bss": sec.get(".bss", 0)}


def run_counted(cmd, elf, timeout, nm="arm-none-eabi-nm", plugin_options=""):
    """Run the emulator command line `cmd` (which loads `elf`, built with the bench drivers) with the
    instruction-counting plugin armed on the driver's marker functions; return all it printed.
    Raises RuntimeError when the run fails or does not reach the driver's "DONE". Shared by the
    Cortex-M, RISC-V and TFLM harnesses."""
    syms = symbols(elf, nm)
    start, stop = syms["ebnn_mark_start"][0], syms["ebnn_mark_stop"][0]
    cmd = [*cmd, "-plugin", f"{plugin()},start={start:#x},stop={stop:#x}{plugin_options}", "-d", "plugin"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or "DONE" not in text:
        raise RuntimeError(f"QEMU run of {elf} failed ({proc.returncode}):\n{text[-3000:]}")
    return text


def result_lines_and_counters(text):
    """(the driver's "R " lines, plugin counters: total, marked, pairs, stack) of a `run_counted` text."""
    m = re.search(r"insn_count total=(\d+) marked=(\d+) pairs=(\d+)", text)
    if m is None:
        raise RuntimeError(f"QEMU run printed no instruction counts:\n{text[-3000:]}")
    counters = {"total": int(m.group(1)), "marked": int(m.group(2)), "pairs": int(m.group(3))}
    st = re.search(r"^S (\d+)", text, re.M)
    counters["stack"] = int(st.group(1)) if st else None
    return [ln for ln in text.splitlines() if ln.startswith("R ")], counters


def run(elf, cpu="cortex-m3", timeout=600, machine=None):
    """Run an ELF under QEMU; return (lines printed, plugin counters; counters["each"]: the instructions
    of every marker pair, in order)."""
    machine = machine or CPUS[cpu][1]
    cmd = ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    text = run_counted(cmd, elf, timeout, plugin_options=",each=1")
    lines, counters = result_lines_and_counters(text)
    counters["each"] = [int(v) for v in re.findall(r"^insn_pair (\d+)", text, re.M)]
    return lines, counters


def header_num_classes(export_dir, name):
    """NAME_NUM_CLASSES from the exported NAME.h."""
    m = re.search(rf"#define\s+{re.escape(name)}_NUM_CLASSES\s+(\d+)", (Path(export_dir) / f"{name}.h").read_text())
    if m is None:
        raise ValueError(f"{name}_NUM_CLASSES not found in {Path(export_dir) / (name + '.h')}")
    return int(m.group(1))


def parse(lines, num_classes):
    classes, logits = [], []
    for ln in lines:
        parts = ln.split()
        classes.append(int(parts[2]))
        logits.append([int(h, 16) for h in parts[3:3 + num_classes]])
    return np.array(classes), np.array(logits, dtype=np.uint32).view(np.float32)


def build_and_run(export_dir, name, images, num_classes=None, cpu="cortex-m3", opt="-O2", workdir=None, flags=(),
                  machine=None):
    """Build, run, and measure. Returns a dict with classes, logits, instructions per inference
    (marker cost subtracted), ELF section sizes and the model's object sizes from the symbol table.
    num_classes defaults to NAME_NUM_CLASSES from the exported header; machine (default: the cpu's
    machine in CPUS) may be "microbit" for a Cortex-M0+ build on a real ARMv6-M core."""
    if num_classes is None:
        num_classes = header_num_classes(export_dir, name)
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ebnn-{cpu}-"))
    elf = build(export_dir, name, images, cpu, opt, work, flags=flags, machine=machine)
    lines, counters = run(elf, cpu, machine=machine)
    classes, logits = parse(lines, num_classes)
    empty = build(export_dir, name, images[:4], cpu, opt, work / "empty", empty=True, flags=flags, machine=machine)
    _, empty_counters = run(empty, cpu, machine=machine)
    marker_cost = empty_counters["marked"] / max(empty_counters["pairs"], 1)
    syms = symbols(elf)
    model_syms = {k: v[1] for k, v in syms.items() if k.startswith(f"{name}_")}
    flash = model_flash(elf, empty, name)
    return {
        "cpu": cpu, "machine": machine or CPUS[cpu][1], "opt": opt, "classes": classes, "logits": logits, "images": len(images),
        "instructions_per_inference": counters["marked"] / max(counters["pairs"], 1) - marker_cost,
        # each marker pair's count (one per image: the kernels' time depends on the data), marker cost subtracted
        "instructions_per_image": [c - marker_cost for c in counters["each"]],
        "marker_cost": marker_cost, "marker_pairs": counters["pairs"], "size": size(elf), "symbols": model_syms, "elf": str(elf),
        # stack used by NAME_predict: painted bytes reached, minus those reached by the calibration
        # build (the paint stops 64 B below main's stack pointer)
        "stack_bytes": None if counters["stack"] is None else counters["stack"] - (empty_counters["stack"] or 0),
        # runtime + predict code incl. the library helpers it pulls in (see model_flash)
        "code_bytes": flash["code"], "libgcc_helpers": flash["helpers"], "model_flash": flash["flash"],
        "empty_elf": str(empty),
    }


BINARY_KERNELS = ("ebnn_binary_conv", "ebnn_binary_dense", "ebnn_binary_dense16")


def bracket_kernels(export_dir, name, dst, kernels=BINARY_KERNELS):
    """Copy of an export in `dst` whose NAME.c calls the driver's marker functions around every call of
    the given kernels (default: the binary conv and binary dense blocks), so `build_and_run` on it
    counts the instructions of those kernel calls only. The plugin restarts at every start marker, so
    the driver's own start marker (before NAME_predict) is superseded by the first kernel's; its stop
    marker (after NAME_predict) finds the count already stopped and is ignored. Returns
    (dst, calls bracketed per inference). The kernels are compiled as their own functions (EBNN_API:
    noipa), so the markers in NAME_predict do not change their code."""
    export_dir, dst = Path(export_dir), Path(dst)
    shutil.copytree(export_dir, dst, dirs_exist_ok=True)
    src = (dst / f"{name}.c").read_text()
    calls = re.compile(r"^(    status = (" + "|".join(map(re.escape, kernels)) + r")\(.*\);)$", re.M)
    src, n = calls.subn(r"    ebnn_mark_start();\n\1\n    ebnn_mark_stop();", src)
    if n == 0:
        raise ValueError(f"{name}.c calls none of {', '.join(kernels)}")
    marker_decl = "void ebnn_mark_start(void);\nvoid ebnn_mark_stop(void);\n"
    src = src.replace(f'#include "{name}.h"\n', f'#include "{name}.h"\n{marker_decl}', 1)
    (dst / f"{name}.c").write_text(src)
    return dst, n


def kernel_instructions(export_dir, name, images, cpu="cortex-m3", opt="-O2", workdir=None, flags=(),
                        kernels=BINARY_KERNELS):
    """Instructions per inference spent in the calls of `kernels` (see bracket_kernels; the cost of the
    marker pair, measured as in build_and_run, subtracted once per bracketed call), with the run's
    classes and logits (which must equal the unbracketed build's)."""
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ebnn-{cpu}-kernels-"))
    bracketed, calls = bracket_kernels(export_dir, name, work / "export", kernels)
    r = build_and_run(bracketed, name, images, cpu=cpu, opt=opt, workdir=work / "build", flags=flags)
    # build_and_run's figure is per marker pair (here: per bracketed call), marker cost subtracted
    r["kernel_instructions"] = calls * r["instructions_per_inference"]
    r["kernel_calls"] = calls
    if r["marker_pairs"] != calls * len(images):
        raise RuntimeError(f"{r['marker_pairs']} marker pairs counted, {calls} x {len(images)} expected")
    return r
