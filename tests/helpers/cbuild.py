"""Helpers to compile and run exported C models and C unit tests from pytest."""
import shutil
import subprocess
from pathlib import Path

import numpy as np

from keras_ebnn.frontdoor import host

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]


def run(cmd, **kw):
    """Run a command; fail the test with its output when it fails. Returns stdout."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def have(tool):
    return shutil.which(tool) is not None


def run_model(lowered, export_dir, name, x, sanitize=True, opt="-O1"):
    """Build the export with the host compiler (strict flags, sanitizers, debug hook) and run it on
    x: returns (classes, logits, [hidden bits (N, nbits) per block])."""
    exe = host.build_runner(export_dir, name, opt=opt, sanitize=sanitize, debug_hook=True)
    try:
        nbits = [int(np.prod(b.out_shape)) for b in lowered.blocks[:-1]]
        return host.run_runner(exe, x, lowered.num_classes, lowered.input.dtype, nbits)
    finally:
        shutil.rmtree(Path(exe).parent, ignore_errors=True)
