"""Safe loading (issue 14): converting an untrusted model file never runs code from it."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from keras_ebnn import convert, import_larq
from keras_ebnn.errors import ModelFileError, UnsafeModelError, UnsupportedModelError
from keras_ebnn.frontend.lowering import load_model
from keras_ebnn.frontend.safe_load import (ALLOWED_CLASSES, ALLOWED_FUNCTIONS, CODE_CLASSES, check_config,
                                  check_model_file, read_model_config)

tf, lq = import_larq()
L = tf.keras.layers
ROOT = Path(__file__).resolve().parent.parent
SIGN = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)


def marker_function(marker):
    """A function that leaves `marker` on disk when called (its path is a constant of its code)."""
    namespace = {}
    exec(f"def touch(x):\n    open({str(marker)!r}, 'w').write('ran')\n    return x\n", namespace)
    return namespace["touch"]


def model_with(layer):
    return tf.keras.Sequential([
        L.InputLayer((8, 8, 1)), L.Rescaling(1 / 255.0), layer,
        lq.layers.QuantConv2D(4, 3, **SIGN), L.BatchNormalization(), L.Flatten(),
        lq.layers.QuantDense(3, input_quantizer="ste_sign", **SIGN), L.BatchNormalization()])


@pytest.fixture(scope="module", params=[".h5", ".keras"])
def lambda_file(request, tmp_path_factory):
    """(model file with a Lambda layer whose function writes a marker, marker path)."""
    base = tmp_path_factory.mktemp("lambda")
    marker = base / "MARKER"
    path = base / f"lam{request.param}"
    model_with(L.Lambda(marker_function(marker), name="touchy")).save(path)
    marker.unlink()  # building the model above called the function once
    return path, marker


def test_lambda_is_refused_without_running_code(lambda_file, tmp_path, capsys):
    path, marker = lambda_file
    assert convert.main([str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "'touchy' (Lambda)" in err and "--trust-model" in err and "Supported layers" not in err
    assert not marker.exists(), "the Lambda's code ran"
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnsafeModelError) as info:
        load_model(path)
    assert info.value.layer_label == "layer 'touchy' (Lambda)"
    assert isinstance(info.value, UnsupportedModelError)  # callers catching the base type still do
    assert not marker.exists()


def test_trust_model_loads_it_and_runs_its_code(lambda_file, tmp_path, capsys):
    """The refusal above is meaningful: with --trust-model the same file does run the function."""
    path, marker = lambda_file
    assert convert.main([str(path), "-o", str(tmp_path / "out"), "--trust-model"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert marker.exists()
    marker.unlink()
    # Loaded, then refused by the lowering as an unsupported layer: error plus the supported list (of the
    # graph lowering, the one that refused it last).
    assert len(lines) == 2 and "'touchy' (Lambda)" in lines[0] and "not supported" in lines[0]
    assert lines[1].startswith("Supported layers: (graph lowering")


@tf.keras.utils.register_keras_serializable("ebnn_test")
class Doubler(L.Layer):
    def call(self, x):
        return 2 * x


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_custom_class_is_refused_by_name(suffix, tmp_path, capsys):
    path = tmp_path / f"custom{suffix}"
    model_with(Doubler(name="dbl")).save(path)
    assert convert.main([str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    # .keras stores the class as "Doubler" (module: this test file); .h5 as "ebnn_test>Doubler".
    assert err.count("\n") == 1 and "layer 'dbl' (" in err and "Doubler)" in err, err
    assert not (tmp_path / "out").exists()


def layer(cls, name="x", module="keras.layers", **cfg):
    return {"module": module, "class_name": cls, "config": {"name": name, **cfg}, "registered_name": None}


def sequential(*layers):
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        layer("InputLayer", "in", batch_input_shape=[None, 8, 8, 1]), *layers]}}


QUANT = {"module": "larq.quantizers", "class_name": "SteSign", "config": {"name": "ste_sign"},
         "registered_name": "SteSign"}


@pytest.mark.parametrize("bad, phrase", [
    (layer("Lambda", "lam"), "layer 'lam' (Lambda): a Lambda layer"),
    (layer("TFOpLambda", "op"), "layer 'op' (TFOpLambda)"),
    (layer("MyLayer", "mine", module=None), "layer 'mine' (MyLayer): class 'MyLayer' is not"),
    (layer("Dense", "d", module="os", units=3), "layer 'd' (Dense): class 'Dense' comes from module 'os'"),
    (dict(layer("Dense", "d", units=3), registered_name="evil>Dense"), "registered as 'evil>Dense'"),
    (layer("QuantDense", "q", module="larq.layers", units=3,
           kernel_quantizer={**QUANT, "class_name": "MyQuant"}),
     "layer 'q' (QuantDense): kernel_quantizer 'MyQuant' is not"),
    (layer("QuantDense", "q", module="larq.layers", units=3, kernel_quantizer={**QUANT, "module": "evil"}),
     "kernel_quantizer 'SteSign' comes from module 'evil'"),
    (layer("QuantDense", "q", module="larq.layers", units=3, kernel_quantizer="my_sign"),
     "layer 'q' (QuantDense): kernel_quantizer 'my_sign' is not"),
    (layer("Dense", "d", units=3, activation="os>system"), "activation 'os>system'"),
    (layer("Dense", "d", units=3, activation={"module": "builtins", "class_name": "function",
                                              "config": "eval", "registered_name": None}),
     "names function 'eval'"),
    (layer("Dense", "d", units=3, kernel_initializer={"class_name": "__lambda__", "config": {}}),
     "a serialized Python lambda"),
    (layer("Sequential", "inner", module="keras", layers=[layer("Lambda", "deep_lam")]),
     "layer 'deep_lam' (Lambda)"),
    (layer("TimeDistributed", "td", layer=layer("Custom", "wrapped", module=None)),
     "layer 'wrapped' (Custom)"),
])
def test_config_check_refuses_code_carriers(bad, phrase):
    with pytest.raises(UnsafeModelError) as info:
        check_config(sequential(bad), "m.keras")
    msg = str(info.value)
    assert phrase in msg and "--trust-model" in msg and "\n" not in msg, msg


def test_config_check_accepts_builtins_and_larq_in_keras2_and_keras3_style():
    ok = sequential(
        layer("Rescaling", "r", scale=0.5),
        layer("QuantConv2D", "c", module="larq.layers", filters=4, kernel_size=[3, 3],
              kernel_quantizer=QUANT, input_quantizer="ste_sign", kernel_constraint="weight_clip",
              kernel_initializer={"module": "keras.initializers", "class_name": "GlorotUniform",
                                  "config": {"seed": None}, "registered_name": None},
              activation={"module": "keras.activations", "class_name": "function", "config": "relu",
                          "registered_name": "relu"}),
        dict(layer("BatchNormalization", "bn", module="keras.src.layers.normalization"),
             registered_name="keras>BatchNormalization"),
        layer("Flatten", "f", module="keras.layers"),
        layer("Dense", "d", module="tf_keras.layers", units=3, activation="softmax",
              dtype={"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}}))
    check_config(ok, "m.keras")
    # The top-level compile_config is ignored (models load with compile=False); nested ones are not.
    check_config({**ok, "compile_config": {"optimizer": {"class_name": "EvilOptimizer"}}}, "m.keras")


def test_allow_list_names_real_keras_and_larq_objects():
    import tf_keras
    for cls in ALLOWED_CLASSES:
        found = [m for m in (tf_keras.layers, tf_keras.initializers, tf_keras.regularizers,
                             tf_keras.constraints, lq.layers, lq.quantizers, lq.constraints, tf_keras)
                 if hasattr(m, cls)]
        assert found or cls in ("Functional", "Policy", "DTypePolicy", "FloatDTypePolicy",
                                "DoReFaQuantizer", "NoOpQuantizer"), cls
    registered = tf_keras.utils.get_custom_objects()  # larq registers its objects by name
    for name in ALLOWED_FUNCTIONS:
        assert name in registered or any(hasattr(m, name) for m in (
            tf_keras.activations, tf_keras.initializers, tf_keras.regularizers, tf_keras.constraints)), name
    assert not set(CODE_CLASSES) & ALLOWED_CLASSES


def test_shipped_models_pass_the_check_without_tensorflow():
    code = ("import sys, glob\n"
            "from keras_ebnn.frontend.safe_load import check_model_file\n"
            "files = sorted(glob.glob('examples/models/*.keras'))\n"
            "assert files and all(check_model_file(f) == 'keras' for f in files)\n"
            "assert 'tensorflow' not in sys.modules\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_savedmodel_directory_needs_trust(tmp_path):
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"\x00")
    with pytest.raises(UnsafeModelError, match="SavedModel directory"):
        check_model_file(sm)
    assert check_model_file(sm, trust_model=True) == "savedmodel"
    with pytest.raises(ModelFileError, match="not a SavedModel"):
        check_model_file(tmp_path)


def small_saved(tmp_path):
    path = tmp_path / "ok.keras"
    model_with(L.Dropout(0.1)).save(path)
    return path


def test_malformed_files_give_one_clear_error(tmp_path):
    good = small_saved(tmp_path)
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}

    def archive(name, **replace):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in {**members, **replace}.items():
                if data is not None:
                    zf.writestr(member, data)
        return path

    cases = {
        archive("nocfg.keras", **{"config.json": None}): "no config.json",
        archive("badjson.keras", **{"config.json": "{"}): "config.json is not valid JSON",
        archive("list.keras", **{"config.json": "[]"}): "config.json is not a JSON object",
        archive("deep.keras", **{"config.json": json.dumps(sequential(
            layer("Dense", "d", units=3, extra=json.loads("[" * 80 + "]" * 80))))}): "nested more than",
        archive("huge.keras", **{"config.json": json.dumps(sequential(
            layer("Dense", "d", units=10 ** 8)))}): "weights, more than",
        archive("range.keras", **{"config.json": json.dumps(sequential(
            layer("Dense", "d", units=10 ** 12)))}): "units is out of range",
    }
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    cases[text] = "not a valid .keras archive"
    weights_only = tmp_path / "weights.h5"
    model_with(L.Dropout(0.1)).save_weights(weights_only)
    cases[weights_only] = "no model_config attribute"
    other = tmp_path / "model.bin"
    other.write_bytes(b"\x00" * 64)
    cases[other] = "not a .keras archive, an HDF5 (.h5) file or a SavedModel"
    for path, phrase in cases.items():
        with pytest.raises(ModelFileError) as info:
            read_model_config(path) if phrase.startswith("no model") else check_model_file(path)
        msg = str(info.value)
        assert phrase in msg and str(path) in msg and "\n" not in msg, msg
        assert "Supported layers" not in msg and info.value.hint is None


def test_trusted_keras_file_still_loads_normally(tmp_path):
    path = small_saved(tmp_path)
    assert load_model(path).count_params() == load_model(path, trust_model=True).count_params()


def test_archive_unpacking_to_too_much_is_refused(tmp_path, monkeypatch):
    import keras_ebnn.frontend.safe_load as safe_load
    path = small_saved(tmp_path)
    monkeypatch.setattr(safe_load, "MAX_ARCHIVE_BYTES", 1000)  # stands for 2 GiB: no bomb on disk
    with pytest.raises(ModelFileError, match="unpack to .* bytes, more than 1,000"):
        check_model_file(path)
