"""python -m keras_ebnn.convert / keras-ebnn-convert (issue: user entry points)."""
import os
import shutil
import subprocess
import re
import sys

import pytest

from helpers.common import small_mnist_model
from keras_ebnn import convert, import_larq
from keras_ebnn.train import datasets

tf, lq = import_larq()
DATA = os.environ.get("EBNN_DATA_DIR")


def test_ok_exit_0(trained_model_file, tmp_path, capsys):
    code = convert.main([str(trained_model_file), "-o", str(tmp_path / "out"), "--name", "digits"])
    assert code == 0
    assert (tmp_path / "out" / "digits.h").is_file()
    assert (tmp_path / "out" / "digits_report.md").is_file()
    assert "flash" in capsys.readouterr().out


def test_default_name_from_file(trained_model_file, tmp_path):
    assert convert.main([str(trained_model_file), "-o", str(tmp_path / "o"), "-q"]) == 0
    assert (tmp_path / "o" / "small.h").is_file()


def test_unsupported_model_exit_1(tmp_path, capsys):
    model = small_mnist_model(tf, lq, pool_layer=tf.keras.layers.ZeroPadding2D(1, name="zpad"))
    path = tmp_path / "bad.keras"
    model.save(path)
    assert convert.main([str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "'zpad' (ZeroPadding2D)" in err and "Supported layers: (graph lowering" in err
    assert "must be a single chain" not in err  # only the list that applies (issue 22)
    assert not (tmp_path / "out").exists()


def test_graph_model_exports(tmp_path, capsys):
    """A model the chain lowering refuses (average pooling) is exported as a graph; its report has
    the per-op tensor table."""
    model = small_mnist_model(tf, lq, pool_layer=tf.keras.layers.AveragePooling2D(2, name="avg"))
    path = tmp_path / "avgnet.keras"
    model.save(path)
    assert convert.main([str(path), "-o", str(tmp_path / "out")]) == 0
    assert "graph of" in capsys.readouterr().out
    report = (tmp_path / "out" / "avgnet_report.md").read_text()
    # the average pool is computed inside the fused conv_pool op (keras_ebnn/passes/graph_fuse.py)
    assert re.search(r"\| conv_pool \| [^|]*\bavg\b", report) and "Tensor types: bits" in report
    assert (tmp_path / "out" / "avgnet.c").is_file() and (tmp_path / "out" / "ebnn_conv_pool_f32.inc").is_file()


def test_budget_errors_exit_1(trained_model_file, tmp_path, capsys):
    assert convert.main([str(trained_model_file), "-o", str(tmp_path / "o"), "--max-ram", "100"]) == 1
    err = capsys.readouterr().err
    assert "RAM" in err and "exceeds the budget of 100 B by" in err and "largest: block" in err
    assert convert.main([str(trained_model_file), "-o", str(tmp_path / "o"), "--max-flash", "200"]) == 1
    err = capsys.readouterr().err
    assert "flash" in err and "exceeds the budget of 200 B by" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    [],  # no model
    ["model.keras"],  # no -o
    ["model.keras", "-o", "x", "--target", "vhdl"],
    ["model.keras", "-o", "x", "--max-ram", "lots"],
])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        convert.main(argv)
    assert info.value.code == 2


def test_missing_file_and_bad_name_exit_2(trained_model_file, tmp_path, capsys):
    assert convert.main([str(tmp_path / "nope.keras"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert convert.main([str(trained_model_file), "-o", str(tmp_path / "o"), "--name", "2bad"]) == 2
    assert convert.main([str(trained_model_file), "-o", str(tmp_path / "o"),
                         "--verify-data", str(tmp_path / "nodata")]) == 2
    assert "EBNN_DATA_DIR" in capsys.readouterr().err


def test_verify_data_prints_accuracies(trained_model_file, tmp_path, capsys, sample_data_dir):
    """--verify-data on an IDX folder: the shipped sample written as IDX files (300 test images), so
    this runs on any clone; with EBNN_DATA_DIR set, on the full 10,000-image test set."""
    full = DATA is not None and datasets.find_dir("mnist", DATA, use_env=False) is not None
    folder, n = (os.path.join(DATA, "mnist"), 10000) if full else (sample_data_dir / "mnist", 300)
    code = convert.main([str(trained_model_file), "-o", str(tmp_path / "o"), "--verify-data", str(folder)])
    assert code == 0
    captured = capsys.readouterr()
    assert f"accuracy on {n} mnist test images: Keras" in captured.out
    assert "exported" in captured.out and "reference executor, C" in captured.out
    assert f"{n}/{n}" in captured.err  # progress bar


def test_console_script_and_module(trained_model_file, tmp_path):
    exe = shutil.which("keras-ebnn-convert", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    assert exe, "console script keras-ebnn-convert is not installed"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--max-flash" in proc.stdout and "--target" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "keras_ebnn.convert", str(trained_model_file), "-o",
                           str(tmp_path / "o"), "--target", "c", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "small.c").is_file()
