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

#ifdef EBNN_DEBUG_HOOK
static FILE *bits_file;
/* writes every hidden block's output words: (uint32 block, uint32 nbits, words...) */
static void dump_bits(int block, const uint32_t *bits, uint32_t nbits)
{
    uint32_t head[2];
    head[0] = (uint32_t)block;
    head[1] = nbits;
    fwrite(head, sizeof(head[0]), 2, bits_file);
    fwrite(bits, sizeof(bits[0]), (nbits + 31u) / 32u, bits_file);
}
#endif

int main(int argc, char **argv)
{
    static @NAME@_input_t input[@NAME@_INPUT_LEN];
    float scores[@NAME@_NUM_CLASSES];
    FILE *in, *out;
    if (argc < 3) {
        fprintf(stderr, "usage: %s INPUTS OUTPUTS [BITS]\n", argv[0]);
        return 2;
    }
#ifdef EBNN_DEBUG_HOOK
    if (argc > 3) {
        bits_file = fopen(argv[3], "wb");
        if (bits_file == NULL)
            return 2;
        @NAME@_debug_hook = dump_bits;
    }
#endif
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
#ifdef EBNN_DEBUG_HOOK
    if (bits_file != NULL)
        fclose(bits_file);
#endif
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


def build_runner(export_dir, name, exe=None, cc=None, opt="-O2", sanitize=False, extra_flags=(),
                 debug_hook=False):
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
           *(["-DEBNN_DEBUG_HOOK"] if debug_hook else []),
           *[f"-I{d}" for d in include_dirs], *c_sources(export_dir), str(main), "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"C build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return exe


def run_runner(exe, inputs, num_classes, dtype, block_bits=None):
    """Run a runner on `inputs` (N, ...); return (classes int (N,), logits float32 (N, K)).

    With block_bits = [nbits of each hidden block] (runner built with debug_hook=True), also return
    the hidden blocks' output bits as a list of bool arrays (N, nbits)."""
    inputs = np.ascontiguousarray(np.asarray(inputs, dtype=dtype))
    with tempfile.TemporaryDirectory(prefix="ebnn-run-") as tmp:
        fin, fout, fbits = Path(tmp) / "in.bin", Path(tmp) / "out.bin", Path(tmp) / "bits.bin"
        fin.write_bytes(inputs.tobytes())
        cmd = [str(exe), str(fin), str(fout)] + ([str(fbits)] if block_bits is not None else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} failed ({proc.returncode}):\n{proc.stderr}")
        rec = np.dtype([("cls", "<i4"), ("logits", "<f4", (num_classes,))])
        out = np.frombuffer(fout.read_bytes(), dtype=rec)
        raw = np.frombuffer(fbits.read_bytes(), dtype="<u4") if block_bits is not None else None
    if len(out) != len(inputs):
        raise RuntimeError(f"runner produced {len(out)} results for {len(inputs)} inputs")
    classes, logits = out["cls"].astype(np.int64), out["logits"].copy()
    if block_bits is None:
        return classes, logits
    return classes, logits, _split_bits(raw, block_bits, len(inputs))


def _split_bits(raw, block_bits, n):
    """Parse the debug-hook dump: per input, per hidden block (block, nbits, words...)."""
    per_block = [[] for _ in block_bits]
    pos = 0
    for _ in range(n):
        for i, nbits in enumerate(block_bits):
            block, got = int(raw[pos]), int(raw[pos + 1])
            if (block, got) != (i, nbits):
                raise RuntimeError(f"debug dump out of step: block {block} with {got} bits, expected {i}, {nbits}")
            nw = (nbits + 31) // 32
            words = raw[pos + 2:pos + 2 + nw]
            bits = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little", count=nbits)
            per_block[i].append(bits.astype(bool))
            pos += 2 + nw
    if pos != raw.size:
        raise RuntimeError("debug dump has trailing data")
    return [np.stack(b) if b else np.zeros((0, nb), bool) for b, nb in zip(per_block, block_bits)]


def predict_c(lowered, export_dir, name, inputs, **build_kw):
    """Build the C export and run it: (classes, logits)."""
    exe = build_runner(export_dir, name, **build_kw)
    try:
        return run_runner(exe, inputs, lowered.num_classes, lowered.input.dtype)
    finally:
        shutil.rmtree(Path(exe).parent, ignore_errors=True)
