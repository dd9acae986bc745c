"""RISC-V RV32 bare metal under QEMU: build an exported model for rv32imc (ilp32, Debian's
riscv64-unknown-elf-gcc with picolibc), run it on `qemu-system-riscv32 -M virt` with output through
the NS16550 UART and exit through the SiFive test device (riscv/startup.c), and count executed
instructions exactly with the same TCG plugin and marker method as the Cortex-M harness
(cortexm.py: the driver brackets every NAME_predict call with two marker functions; the marker
pair's own cost, from a build with nothing in between, is subtracted).

`cpu="rv32imc_zbb"` adds the Zbb bit-manipulation extension (GCC 12 compiles __builtin_popcount to
`cpop`); it runs on QEMU's rv32 core with zbb=true. Debian's toolchain has no rv32imc or Zbb
multilib: sources are compiled with the full -march, and the program is linked against the rv32im
libgcc/picolibc (a subset of both targets).
"""
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.targets import cortexm

HERE = Path(__file__).resolve().parent / "riscv"
DRIVER = Path(__file__).resolve().parent / "cortexm" / "driver.c"
CC = "riscv64-unknown-elf-gcc"
NM = "riscv64-unknown-elf-nm"
QEMU = "qemu-system-riscv32"
# cpu: (compile -march, QEMU -cpu). Linking always uses -march=rv32imc (see the module docstring).
CPUS = {
    "rv32imc": ("rv32imc", "rv32,zba=false,zbb=false,zbc=false,zbs=false"),
    "rv32imc_zbb": ("rv32imc_zbb", "rv32,zba=false,zbb=true,zbc=false,zbs=false"),
}
ABI = "ilp32"


def available():
    """The cross compiler with picolibc, QEMU for riscv32, and a host gcc for the plugin."""
    if not all(shutil.which(t) for t in (CC, NM, "riscv64-unknown-elf-size", QEMU, "gcc")):
        return False
    proc = subprocess.run([CC, "--specs=picolibc.specs", "-print-file-name=picolibc.specs"],
                          capture_output=True, text=True)
    return proc.returncode == 0 and Path(proc.stdout.strip()).is_file()


def supports(cpu):
    """Whether the installed compiler accepts `cpu`'s -march (rv32imc_zbb needs GCC >= 12): compiles a
    one-line function with it. (A QEMU without the cpu's extension fails the run itself.)"""
    if not available():
        return False
    march = CPUS[cpu][0]
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "probe.c"
        src.write_text("unsigned probe(unsigned x) { return (unsigned)__builtin_popcount(x); }\n")
        proc = subprocess.run([CC, f"-march={march}", f"-mabi={ABI}", "-O2", "-c", str(src), "-o",
                               str(Path(work) / "probe.o")], capture_output=True, text=True)
    return proc.returncode == 0


def build(export_dir, name, images, cpu="rv32imc", opt="-O2", workdir=None, empty=False, flags=()):
    """Compile the export + the Cortex-M driver (shared) + riscv/startup.c into an ELF. `empty=True`
    builds the marker-calibration ELF; `flags` are extra compiler options (e.g. -DEBNN_POPCOUNT=1)."""
    march, _ = CPUS[cpu]
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ebnn-{cpu}-"))
    work.mkdir(parents=True, exist_ok=True)
    export_dir = Path(export_dir)
    head = (export_dir / f"{name}.h").read_text().split(f"{name}_input_t")[0][-40:]
    ctype = "uint8_t" if "uint8_t" in head else "int8_t" if "int8_t" in head else "float"  # as cortexm.build
    cortexm.images_header(work / "images.h", images, ctype)
    base = [CC, f"-march={march}", f"-mabi={ABI}", "--specs=picolibc.specs"]
    cflags = ["-std=c99", "-Wall", "-Wextra", "-Werror", opt, "-ffunction-sections", "-fdata-sections",
              f"-I{export_dir}", f"-I{work}", f"-DMODEL_HEADER=\"{name}.h\"", f"-DMODEL={name}",
              *(["-DPREDICT_EMPTY"] if empty else []), *flags]
    objs = []
    for src in [*sorted(export_dir.glob("*.c")), DRIVER, HERE / "startup.c"]:
        obj = work / f"{src.stem}{'_empty' if empty else ''}.o"
        cmd = [*base, *cflags, "-c", str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"RISC-V build failed:\n{' '.join(cmd)}\n{proc.stderr}")
        objs.append(str(obj))
    elf = work / f"{name}_{cpu}{'_empty' if empty else ''}.elf"
    cmd = [CC, "-march=rv32imc", f"-mabi={ABI}", "--specs=picolibc.specs", "-nostartfiles",
           "-T", str(HERE / "link.ld"), "-Wl,--gc-sections", *objs, "-o", str(elf), "-lc", "-lgcc"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"RISC-V link failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return elf


def size(elf):
    out = subprocess.run(["riscv64-unknown-elf-size", "-A", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("."):
            sec[parts[0]] = int(parts[1])
    return {"text": sec.get(".text", 0), "data": sec.get(".data", 0), "bss": sec.get(".bss", 0)}


def run(elf, cpu="rv32imc", timeout=600):
    """Run an ELF under QEMU; return (lines printed, plugin counters) as cortexm.run does."""
    cmd = [QEMU, "-M", "virt", "-cpu", CPUS[cpu][1], "-bios", "none", "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-kernel", str(elf)]
    return cortexm.result_lines_and_counters(cortexm.run_counted(cmd, elf, timeout, nm=NM))


def build_and_run(export_dir, name, images, num_classes=None, cpu="rv32imc", opt="-O2", workdir=None, flags=()):
    """Build, run, and measure, as cortexm.build_and_run: classes, logits, instructions per inference
    (marker cost subtracted), section sizes, the model's symbols, stack and code bytes."""
    if num_classes is None:
        num_classes = cortexm.header_num_classes(export_dir, name)
    work = Path(workdir or tempfile.mkdtemp(prefix=f"ebnn-{cpu}-"))
    elf = build(export_dir, name, images, cpu, opt, work, flags=flags)
    lines, counters = run(elf, cpu)
    classes, logits = cortexm.parse(lines, num_classes)
    empty = build(export_dir, name, images[:4], cpu, opt, work / "empty", empty=True, flags=flags)
    _, empty_counters = run(empty, cpu)
    marker_cost = empty_counters["marked"] / max(empty_counters["pairs"], 1)
    syms = cortexm.symbols(elf, NM)
    flash = cortexm.model_flash(elf, empty, name, size_fn=size, nm=NM)
    return {
        "cpu": cpu, "opt": opt, "classes": classes, "logits": logits, "images": len(images),
        "instructions_per_inference": counters["marked"] / max(counters["pairs"], 1) - marker_cost,
        "marker_cost": marker_cost, "size": size(elf), "elf": str(elf), "empty_elf": str(empty),
        "symbols": {k: v[1] for k, v in syms.items() if k.startswith(f"{name}_")},
        "stack_bytes": None if counters["stack"] is None else counters["stack"] - (empty_counters["stack"] or 0),
        "code_bytes": flash["code"], "libgcc_helpers": flash["helpers"], "model_flash": flash["flash"],
    }
