"""Build an exported model with the host C compiler and run it on inputs (for verification).

The runner is a small C program: it reads NAME_INPUT_LEN values per input from a binary file, calls
NAME_predict, and writes the class (int32) and the NAME_NUM_CLASSES float logits per input.
"""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

RUNNER = r"""
#include <stdint.h>
#include <stdio.h>
#include "@NAME@.h"

int main(int argc, char **argv)
{
    static @NAME@_input_t input[@NAME@_INPUT_LEN];
    float scores[@NAME@_NUM_CLASSES];
    FILE *in, *out;
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUTS OUTPUTS\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot open files\n");
        return 2;
    }
    while (fread(input, sizeof(input[0]), @NAME@_INPUT_LEN, in) == @NAME@_INPUT_LEN) {
        int32_t cls = (int32_t)@NAME@_predict(input, scores);
        fwrite(&cls, sizeof(cls), 1, out);
        fwrite(scores, sizeof(scores[0]), @NAME@_NUM_CLASSES, out);
    }
    fclose(in);
    fclose(out);
    return 0;
}
"""

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def find_cc():
    """The host C compiler: $CC, else cc, gcc or clang; None when there is none."""
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def c_sources(export_dir):
    return sorted(str(p) for p in Path(export_dir).rglob("*.c"))


def build_runner(export_dir, name, exe=None, cc=None, opt="-O2", sanitize=False, extra_flags=()):
    """Compile the export plus the runner; return the executable's path."""
    cc = cc or find_cc()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    export_dir = Path(export_dir)
    work = Path(tempfile.mkdtemp(prefix="ebnn-host-"))
    main = work / "runner_main.c"
    main.write_text(RUNNER.replace("@NAME@", name))
    exe = Path(exe) if exe else work / f"{name}_runner"
    include_dirs = sorted({str(Path(p).parent) for p in c_sources(export_dir)} | {str(export_dir)})
    cmd = [cc, *STRICT, opt, *(SANITIZE if sanitize else []), *extra_flags,
           *[f"-I{d}" for d in include_dirs], *c_sources(export_dir), str(main), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"C build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return exe


def run_runner(exe, inputs, num_classes, dtype):
    """Run a runner on `inputs` (N, ...); return (classes int (N,), logits float32 (N, K))."""
    inputs = np.ascontiguousarray(np.asarray(inputs, dtype=dtype))
    with tempfile.TemporaryDirectory(prefix="ebnn-run-") as tmp:
        fin, fout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        fin.write_bytes(inputs.tobytes())
        proc = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} failed ({proc.returncode}):\n{proc.stderr}")
        rec = np.dtype([("cls", "<i4"), ("logits", "<f4", (num_classes,))])
        out = np.frombuffer(fout.read_bytes(), dtype=rec)
    if len(out) != len(inputs):
        raise RuntimeError(f"runner produced {len(out)} results for {len(inputs)} inputs")
    return out["cls"].astype(np.int64), out["logits"].copy()


def predict_c(lowered, export_dir, name, inputs, **build_kw):
    """Build the C export and run it: (classes, logits)."""
    exe = build_runner(export_dir, name, **build_kw)
    try:
        return run_runner(exe, inputs, lowered.num_classes, lowered.input.dtype)
    finally:
        shutil.rmtree(Path(exe).parent, ignore_errors=True)
