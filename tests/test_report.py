"""keras_ebnn.summary() before training, and the report written next to an export."""
import numpy as np
import pytest

from helpers.common import small_mnist_model
from keras_ebnn import import_larq, summary
from keras_ebnn.exporters.c import memory_plan
from keras_ebnn.frontend.lowering import lower

tf, lq = import_larq()


def test_summary_before_training():
    model = small_mnist_model(tf, lq)  # never trained, never compiled
    lines = []
    text = summary(model, print_fn=lines.append)
    assert lines == [text]
    plan = memory_plan(lower(model))
    for kind in ("input_conv", "binary_conv", "output_dense"):
        assert kind in text
    assert f"**{plan['totals']['flash_bytes']:,} B**" in text
    assert f"**{plan['totals']['ram_bytes']:,} B**" in text
    assert "MACs" in text


def test_report_and_chart(tmp_path):
    from keras_ebnn.frontdoor.exporting import export
    model = small_mnist_model(tf, lq)
    x = np.random.default_rng(0).integers(0, 256, (32, 28, 28, 1)).astype(np.uint8)
    result = export(model, tmp_path / "out", name="rep", verify_inputs=x)
    text = (tmp_path / "out" / "rep_report.md").read_text()
    assert "keras-ebnn export report" in text and "| 0 | input_conv |" in text
    assert "Reference executor vs Keras on 32 inputs" in text
    pytest.importorskip("matplotlib")
    png = tmp_path / "out" / "rep_memory.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "rep_memory.png" in text


def test_export_summary_names_every_ram_part(tmp_path):
    """ExportResult.summary(): RAM = activations (+ kernel scratch when the binary conv's patch does
    not fit between the buffers) + stack, and the parts printed add up to the total."""
    import re
    from keras_ebnn.frontdoor.exporting import export
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "models" / "uno_mnist.keras"
    lowered = lower(path)
    totals = memory_plan(lowered)["totals"]
    result = export(lowered, tmp_path / "out", name="uno", check_c=False)
    text = result.summary()
    ram = re.search(r"RAM (\d+) B \(([^)]*)\)", text)
    parts = [int(v) for v in re.findall(r"(\d+) B", ram.group(2))]
    assert int(ram.group(1)) == totals["ram_bytes"] == sum(parts)
    assert ("kernel scratch" in ram.group(2)) == bool(totals.get("kernel_scratch_bytes"))


def test_measured_tables_are_the_writers_output():
    """exporters/measured.py is exactly what bench/common.py write_measured writes for its own tables
    (the bench scripts that measure them rewrite it; nobody pastes figures by hand)."""
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "bench"))
    try:
        import common
    finally:
        sys.path.remove(str(root / "bench"))
    from keras_ebnn.exporters import measured
    tables = {name: getattr(measured, name) for name in common.MEASURED_TABLES}
    assert common.render_measured(tables) == common.MEASURED.read_text()
    assert set(tables["COMPILERS"]) == {"arm-none-eabi-gcc", "avr-gcc"}
