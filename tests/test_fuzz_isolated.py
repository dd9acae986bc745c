"""Seeded fuzz of HDF5 and zip model files through the isolated reader (issue 19).

test_fuzz_convert.py flips bytes where the formats must notice (signatures, CRC-protected data) and
runs the conversions in one process. Here the damage goes anywhere -- bytes flipped at random
offsets of an .h5 file and of the model.weights.h5 inside a .keras archive (the archive rebuilt, so
its CRCs hold and the damaged HDF5 is really read), truncations, blocks overwritten with random
bytes -- and every file is read by keras_ebnn.frontend.safe_load.prepared_model_file, which checks it in a
child process with the 8 GiB address-space limit and the time limit (keras_ebnn.frontend.isolation). Each
file must give either a checked private copy or one ModelFileError line, within the time bound; a
C-library crash or endless loop there is reported as such a line (that is the point of the child).
A few of the files that pass the check then go through the whole CLI (child: Keras loads them).

The default run takes a short sample; `pytest -m slow` runs the long one.
"""
import io
import os
import random
import time
import zipfile
from pathlib import Path

import pytest

from keras_ebnn import convert, import_larq
from keras_ebnn.errors import ModelFileError
from keras_ebnn.frontend.safe_load import prepared_model_file
from test_fuzz_convert import small_model  # the 12x12 model both fuzz tests damage

TIME_BOUND = 45.0  # seconds per file (the child's own limit is 30 s per phase)


def damage(data, rng):
    """One random damage: a burst of flipped bytes, a truncation, or a block of random bytes."""
    out = bytearray(data)
    how = rng.choice(["flip", "flip", "flip", "truncate", "block"])
    if how == "truncate":
        return how, bytes(out[:rng.randrange(len(out))])
    pos = rng.randrange(len(out))
    n = rng.randint(1, 4) if how == "flip" else rng.randint(8, 256)
    for i in range(pos, min(pos + n, len(out))):
        out[i] = out[i] ^ rng.randint(1, 255) if how == "flip" else rng.randrange(256)
    return how, bytes(out)


def corpus(base, n, seed):
    tf, lq = import_larq()
    tf.keras.utils.set_random_seed(0)
    model = small_model(tf, lq)
    h5, keras = base / "valid.h5", base / "valid.keras"
    model.save(h5)
    model.save(keras)
    with zipfile.ZipFile(keras) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    rng = random.Random(seed)
    files = []
    hdata = h5.read_bytes()
    for i in range(n):
        kind = rng.choice(["h5", "h5", "keras_weights", "keras_raw"])
        if kind == "h5":
            how, data = damage(hdata, rng)
            path = base / f"f{i:04d}_{how}.h5"
        elif kind == "keras_weights":  # the archive is rebuilt: CRCs hold, the inner HDF5 is damaged
            how, weights = damage(members["model.weights.h5"], rng)
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                for name, member in members.items():
                    zf.writestr(name, weights if name == "model.weights.h5" else member)
            data, path = buf.getvalue(), base / f"f{i:04d}_weights_{how}.keras"
        else:
            how, data = damage(keras.read_bytes(), rng)
            path = base / f"f{i:04d}_zip_{how}.keras"
        path.write_bytes(data)
        files.append(path)
    return keras, files


def fuzz(tmp_path, capsys, n, seed, n_cli):
    valid, files = corpus(tmp_path, n, seed)
    passed, failures, slowest, stopped = [], [], 0.0, 0
    for path in files:
        start = time.monotonic()
        try:
            with prepared_model_file(path) as (kind, copy):
                assert copy.is_file() and copy.read_bytes() == path.read_bytes()
            passed.append(path)
        except ModelFileError as exc:
            msg = str(exc)
            if "\n" in msg or not msg.startswith(("could not read model file", "model file")):
                failures.append(f"{path.name}: {msg[:300]!r}")
            stopped += "crashed (" in msg or "time limit" in msg  # the child died: reported, contained
        seconds = time.monotonic() - start
        slowest = max(slowest, seconds)
        if seconds > TIME_BOUND:
            failures.append(f"{path.name}: took {seconds:.1f} s")
    assert not failures, "\n".join(failures)
    assert len(passed) < len(files)  # the damage is seen (most of it)
    rng = random.Random(seed)
    for path in rng.sample(passed, min(n_cli, len(passed))):  # damage the check let through
        out = Path(str(path) + ".out")
        start = time.monotonic()
        code = convert.main([str(path), "-o", str(out), "-q"])
        err = capsys.readouterr().err
        assert time.monotonic() - start < TIME_BOUND + 30
        if code != 0:
            lines = err.splitlines()
            assert code in (1, 2) and lines and lines[0].startswith("error: "), err
            assert len(lines) == 1 or lines[1].startswith("Supported layers"), err
            assert not out.exists()
    print(f"\n{len(files)} damaged files: {len(passed)} passed the check, the rest refused with one "
          f"line ({stopped} of them after the reading child crashed or ran out of time); slowest "
          f"{slowest:.2f} s")
    return passed


def test_fuzzed_files_in_the_isolated_reader(tmp_path, capsys):
    fuzz(tmp_path, capsys, n=20, seed=19, n_cli=1)


@pytest.mark.slow
def test_fuzzed_files_in_the_isolated_reader_long(tmp_path, capsys, request):
    if "slow" not in (request.config.getoption("markexpr") or "") and "EBNN_FUZZ_FILES" not in os.environ:
        pytest.skip("long fuzz run (about 7 min): pytest -m slow, or EBNN_FUZZ_FILES=N")
    fuzz(tmp_path, capsys, n=int(os.environ.get("EBNN_FUZZ_FILES", "400")), seed=1919, n_cli=10)
