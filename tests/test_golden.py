"""Golden tests of the generated C: NAME.c, NAME.h and the report text of fixed models, compared byte for
byte with the files under tests/golden/<case>/.

Cases: every shipped model (examples/models/*.keras), the 1-D example (examples/sensor_1d), a few random
chains (tests/modelgen.py) and graphs (tests/graphgen.py) with fixed seeds, for the c target; and the
Arduino and Zephyr wrappers of one model each (their own files, and their C where it is not the c
target's). No training, no compiler: each case lowers, plans and writes an export.

A change of the generated code fails here until its golden files are regenerated and the diff reviewed:

    EBNN_UPDATE_GOLDEN=1 python -m pytest -q tests/test_golden.py     # rewrite tests/golden/
    git diff --stat tests/golden/                                    # then review every diff

The report's memory chart line (written only when matplotlib is installed) is left out of the
comparison.
"""
import os
from pathlib import Path

import pytest

from helpers.common import ROOT

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("EBNN_UPDATE_GOLDEN") == "1"
SHIPPED = sorted(p.stem for p in (ROOT / "examples" / "models").glob("*.keras"))
CHAIN_SEEDS = (0, 1, 3, 5)  # tests/modelgen.py random_model: sign_uint8, sign_float, uint8, float inputs
GRAPH_SEEDS = (0, 1, 4)  # tests/graphgen.py random_graph
CASES = ([f"shipped_{n}" for n in SHIPPED] + ["sensor_1d"] + [f"chain_seed{s}" for s in CHAIN_SEEDS]
         + [f"graph_seed{s}" for s in GRAPH_SEEDS] + ["arduino_uno_mnist", "zephyr_tiny_mnist"])
WRAPPER_FILES = {  # per wrapper target: its own files (golden name: path in the export)
    "arduino": {"golden.ino": "examples/golden/golden.ino"},
    "zephyr": {"CMakeLists.txt": "CMakeLists.txt", "Kconfig": "Kconfig", "module.yml": "zephyr/module.yml"},
}


def _model(case):
    from keras_ebnn.frontend.lowering import load_model
    if case.startswith("shipped_"):
        return load_model(ROOT / "examples" / "models" / f"{case[len('shipped_'):]}.keras")
    if case.startswith(("arduino_", "zephyr_")):
        return load_model(ROOT / "examples" / "models" / f"{case.split('_', 1)[1]}.keras")
    if case == "sensor_1d":
        return load_model(ROOT / "examples" / "sensor_1d" / "sensor_1d.keras")
    from keras_ebnn import import_tf
    import_tf().keras.backend.clear_session()  # layer names (in the C comments) independent of earlier tests
    if case.startswith("chain_seed"):
        from helpers.modelgen import random_model
        return random_model(int(case[len("chain_seed"):]), n_inputs=8)[0]
    from helpers.graphgen import random_graph
    return random_graph(int(case[len("graph_seed"):]), n_inputs=4)[0]


def _outputs(case, tmp_path):
    """{file name: text} of the export of `case` that the golden files hold."""
    from keras_ebnn.frontdoor.exporting import export
    target = case.split("_", 1)[0] if case.startswith(("arduino_", "zephyr_")) else "c"
    name = "golden"
    out = tmp_path / "out"
    export(_model(case), out, name=name, target=target, check_c=False)
    c_dir = out if target == "c" else out / "src"
    files = {f"{name}.c": (c_dir / f"{name}.c").read_text(), f"{name}.h": (c_dir / f"{name}.h").read_text()}
    if target != "c":  # a wrapper: its own files, and its C where it is not the c target's (golden shipped_<model>/)
        c_golden = GOLDEN / f"shipped_{case.split('_', 1)[1]}"
        files = {fname: text for fname, text in files.items() if text != (c_golden / fname).read_text()}
        files.update({fname: (out / path).read_text() for fname, path in WRAPPER_FILES[target].items()})
    report = (out / f"{name}_report.md").read_text().splitlines(keepends=True)
    files[f"{name}_report.md"] = "".join(line for line in report if not line.startswith("![memory per"))
    return files


@pytest.mark.parametrize("case", CASES)
def test_golden(case, tmp_path):
    files = _outputs(case, tmp_path)
    folder = GOLDEN / case
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.name not in files:
                old.unlink()
        for fname, text in files.items():
            (folder / fname).write_text(text)
        return
    if not folder.is_dir():
        pytest.fail(f"no golden files for {case}: run EBNN_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py")
    assert sorted(p.name for p in folder.iterdir()) == sorted(files), f"{case}: golden file set differs"
    for fname, text in files.items():
        want = (folder / fname).read_text()
        if text != want:
            import difflib
            diff = "".join(list(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                                     f"golden/{case}/{fname}", "generated"))[:60])
            pytest.fail(f"{case}/{fname} differs from the golden file (EBNN_UPDATE_GOLDEN=1 to rewrite, then "
                        f"review the diff):\n{diff}")
