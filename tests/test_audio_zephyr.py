"""examples/spoken_digits/zephyr on Zephyr's native_sim: the shipped spoken-digits model exported with
its audio front end as a Zephyr module, clips written to WAV files and turned into
spoken_digits_clips.h by make_clips.py, the sample built with cmake/ninja and run; its digits and
logits (float32 bits) must equal the NumPy reference's (FrontEnd features -> graph reference) on the
same clips. FSDD test clips when EBNN_DATA_DIR has them, else generated audio. Skips without
ZEPHYR_BASE or a Python >= 3.12 with Zephyr's packages (EBNN_ZEPHYR_PYTHON)."""
import json
import os
import re
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.targets

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "spoken_digits"
ZEPHYR_BASE = os.environ.get("ZEPHYR_BASE")


def _zephyr_python():
    for cand in (os.environ.get("EBNN_ZEPHYR_PYTHON"), shutil.which("python3")):
        if cand and subprocess.run([cand, "-c", "import sys; assert sys.version_info >= (3, 12); "
                                    "import yaml, elftools, pykwalify, packaging"], capture_output=True).returncode == 0:
            return cand
    return None


def _clips(sample_rate):
    """[(file name, int16 clip, label)]: the first FSDD test clip of each digit, else 8 generated
    clips (voiced-like harmonic sweeps, noise bursts, a click, silence) with label -1."""
    from keras_ebnn.train import datasets
    try:
        clips, y = datasets.load_fsdd(split="test", sample_rate=sample_rate)
        first = [int(np.flatnonzero(y == d)[0]) for d in range(10)]
        return [(f"{d}_fsdd_{i}.wav", clips[i], d) for d, i in enumerate(first)]
    except datasets.DatasetNotFoundError:
        pass
    rng = np.random.default_rng(23)
    out = []
    for i in range(8):
        n = int(rng.integers(2000, 9000))
        t = np.arange(n) / sample_rate
        env = np.sin(np.pi * np.arange(n) / n) ** 2
        f0 = rng.uniform(90, 250) * (1 + rng.uniform(-0.4, 0.4) * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        x = sum(np.sin(h * phase) * rng.uniform(0, 1) / h for h in range(1, 12))
        if i % 3 == 2:
            x = rng.standard_normal(n) * (t > t[-1] / 2)
        x = x * env * rng.uniform(300, 12000) / max(np.max(np.abs(x)), 1e-9)
        out.append((f"synthetic_{i}.wav", np.clip(np.round(x), -32768, 32767).astype(np.int16), -1))
    out.append(("click.wav", np.r_[np.zeros(500), 30000, -30000, np.zeros(1500)].astype(np.int16), -1))
    out.append(("silence.wav", np.zeros(4000, np.int16), -1))
    return out


def _write_wav(path, samples, rate):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, "<i2").tobytes())


@pytest.mark.skipif(not ZEPHYR_BASE, reason="ZEPHYR_BASE is not set (Zephyr is not installable from registries)")
def test_spoken_digits_zephyr_sample_on_native_sim(tmp_path):
    import keras_ebnn
    from keras_ebnn.frontend import audio
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.ir.graph import lower_graph
    from keras_ebnn.frontend.lowering import load_model
    python = _zephyr_python()
    if python is None:
        pytest.skip("no Python >= 3.12 with Zephyr's packages (set EBNN_ZEPHYR_PYTHON)")
    if not (shutil.which("cmake") and shutil.which("ninja")):
        pytest.skip("cmake / ninja not installed")
    fe = audio.FrontEnd(**json.loads((EXAMPLE / "frontend.json").read_text()))
    model = load_model(EXAMPLE / "spoken_digits.keras")
    module = tmp_path / "module"
    keras_ebnn.export(model, module, name="spoken_digits", target="zephyr", audio_frontend=fe)

    clips = _clips(fe.sample_rate)
    wavs = tmp_path / "wav"
    wavs.mkdir()
    for name, samples, _ in clips:
        _write_wav(wavs / name, samples, fe.sample_rate)
    header = tmp_path / "clips" / "spoken_digits_clips.h"
    header.parent.mkdir()
    subprocess.run([sys.executable, str(EXAMPLE / "zephyr" / "make_clips.py"), str(header),
                    *(str(wavs / name) for name, _, _ in clips)], check=True, capture_output=True)

    # ZEPHYR_MODULES, not ZEPHYR_EXTRA_MODULES: Zephyr 3.4 trees ignore the extra modules when
    # west is not installed; native_sim needs no other module
    build = tmp_path / "build"
    env = dict(os.environ, ZEPHYR_TOOLCHAIN_VARIANT="host")
    for cmd in (["cmake", "-GNinja", "-S", str(EXAMPLE / "zephyr"), "-B", str(build), "-DBOARD=native_sim",
                 f"-DZEPHYR_MODULES={module}", f"-DCLIPS_HEADER={header}", f"-DPython3_EXECUTABLE={python}"],
                ["ninja", "-C", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = subprocess.run([str(build / "zephyr" / "zephyr.exe"), "--stop_at=5"], capture_output=True, text=True,
                         timeout=300)
    print(run.stdout[-1500:])
    rows = re.findall(r"clip (\d+) \((\S+), (\d+) samples\): digit (-?\d+) streamed (-?\d+)(?: label (\d+))? "
                      r"logits((?: [0-9a-f]{8})+)", run.stdout)
    assert len(rows) == len(clips), run.stdout[-3000:]
    assert f"streamed equals whole: {len(clips)}/{len(clips)}" in run.stdout

    x = fe.features_batch([c for _, c, _ in clips])
    ref = graph_reference.run(lower_graph(model), x)
    for (i, name, n, cls, streamed, label, logits), (want_name, samples, want_label) in zip(rows, clips):
        assert (name, int(n)) == (want_name, len(samples))
        assert (int(label) if label else -1) == want_label
    classes = np.array([int(r[3]) for r in rows])
    assert np.array_equal(classes, ref["classes"]), (classes, ref["classes"])
    assert np.array_equal(classes, [int(r[4]) for r in rows])
    bits = np.array([[int(v, 16) for v in r[6].split()] for r in rows], np.uint32)
    assert np.array_equal(bits, np.asarray(ref["logits"], np.float32).view(np.uint32))
    assert len(np.unique(classes)) > 1  # the clips tell digits apart: a constant answer would fail
    if clips[0][2] >= 0:  # FSDD: the shipped model gets these right (99.67% on the 300 test clips)
        assert np.mean(classes == [c[2] for c in clips]) >= 0.9
