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

from ..ir.graph import as_graph

# The debug hook of a program built with -DEBNN_DEBUG_HOOK: writes every reported tensor (a chain's
# hidden blocks, a graph's ops) as (uint32 index, uint32 nbits, its (nbits + 31) / 32 words) to bits_file.
DUMP_HOOK = r"""
#ifdef EBNN_DEBUG_HOOK
static FILE *bits_file;
static void dump_bits(int index, const uint32_t *bits, uint32_t nbits)
{
    uint32_t head[2];
    head[0] = (uint32_t)index;
    head[1] = nbits;
    fwrite(head, sizeof(head[0]), 2, bits_file);
    fwrite(bits, sizeof(bits[0]), (nbits + 31u) / 32u, bits_file);
}
#endif
"""

# run_@N@: reads @N@_INPUT_LEN values per input from in_path, writes (int32 class, @N@_NUM_CLASSES float
# logits) per input to out_path and, when bits_path is not NULL (debug hook builds), the dump to it.
# Returns 1 when a file cannot be opened, else 0.
RUN_MODEL = r"""
static int run_@N@(const char *in_path, const char *out_path, const char *bits_path)
{
    static @N@_input_t input[@N@_INPUT_LEN];
#ifdef @N@_SCORES_INT32
    int32_t scores[@N@_NUM_CLASSES]; /* integer-only export (quantize="int8"): int32 logits */
#else
    float scores[@N@_NUM_CLASSES];
#endif
    FILE *in = fopen(in_path, "rb"), *out = fopen(out_path, "wb");
    if (in == NULL || out == NULL)
        return 1;
#ifdef EBNN_DEBUG_HOOK
    if (bits_path != NULL) {
        bits_file = fopen(bits_path, "wb");
        if (bits_file == NULL)
            return 1;
        @N@_debug_hook = dump_bits;
    }
#else
    (void)bits_path;
#endif
    while (fread(input, sizeof(input[0]), @N@_INPUT_LEN, in) == @N@_INPUT_LEN) {
        int32_t cls = (int32_t)@N@_predict(input, scores);
        fwrite(&cls, sizeof(cls), 1, out);
        fwrite(scores, sizeof(scores[0]), @N@_NUM_CLASSES, out);
    }
    fclose(in);
    fclose(out);
#ifdef EBNN_DEBUG_HOOK
    if (bits_file != NULL)
        fclose(bits_file);
    bits_file = NULL;
#endif
    return 0;
}
"""


def program_source(names, dump=False):
    """C source of a host program running the exported models `names` (each NAME.h on the include
    path): its arguments are, per model in order, an INPUTS file (NAME_INPUT_LEN values per input) and
    an OUTPUTS file (int32 class and NAME_NUM_CLASSES float logits per input), and with dump=True a
    BITS file that receives the debug hook's dump (build with -DEBNN_DEBUG_HOOK). It exits with 2 on a
    wrong argument count, 1 when a file cannot be opened, else 0."""
    per = 3 if dump else 2
    head = "#include <stdint.h>\n#include <stdio.h>\n" + "".join(f'#include "{n}.h"\n' for n in names) + DUMP_HOOK
    body = "".join(RUN_MODEL.replace("@N@", n) for n in names)
    calls = " || ".join(f"run_{n}(argv[{per * i + 1}], argv[{per * i + 2}], "
                        f"{f'argv[{per * i + 3}]' if dump else 'NULL'})" for i, n in enumerate(names))
    return head + body + f"\nint main(int argc, char **argv)\n{{\n    if (argc != {per * len(names) + 1})\n" \
        f"        return 2;\n    return ({calls}) ? 1 : 0;\n}}\n"


# The runner of build_runner: `runner INPUTS OUTPUTS [BITS]` for one model (program_source's files).
RUNNER = r"""
#include <stdint.h>
#include <stdio.h>
#include "@NAME@.h"
""" + DUMP_HOOK + RUN_MODEL.replace("@N@", "@NAME@") + r"""
int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s INPUTS OUTPUTS [BITS]\n", argv[0]);
        return 2;
    }
    if (run_@NAME@(argv[1], argv[2], argc > 3 ? argv[3] : NULL) != 0) {
        fprintf(stderr, "cannot open files\n");
        return 2;
    }
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
        classes, logits = run_runner(exe, inputs, lowered.num_classes, lowered.input.dtype)
        if as_graph(lowered).quant is not None:  # int32 logits (quantize="int8")
            logits = logits.view(np.int32).astype(np.int64)
        return classes, logits
    finally:
        shutil.rmtree(Path(exe).parent, ignore_errors=True)
