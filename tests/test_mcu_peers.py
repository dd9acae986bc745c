"""bench/mcu_peers.py and bench/targets/tflm.py (TFLite Micro + CMSIS-NN on Cortex-M under QEMU).

The TFLM tree is not in this repository: the device check runs only when TFLM_DIR points at one (and
compiles it once, a few minutes, into a cache folder in the temp dir, or reuses the objects in
TFLM_OBJECTS, e.g. the bench's cache/tflm-cortex-m4); the bench itself must skip cleanly without it.
"""
import os
import sys

import numpy as np
import pytest

from helpers.common import ROOT

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import mcu_peers  # noqa: E402
from bench.targets import tflm  # noqa: E402


def test_bench_skips_cleanly_without_tflm(monkeypatch, capsys):
    monkeypatch.delenv("TFLM_DIR", raising=False)
    assert not tflm.available()
    assert mcu_peers.main(["--no-write"]) == 0
    assert "skipped: needs TFLM_DIR" in capsys.readouterr().out


def test_int8_twin_keeps_the_layers_and_sizes():
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    model = tf.keras.models.load_model(ROOT / "examples" / "models" / "uno_mnist.keras")
    twin = mcu_peers.int8_twin(model, tf)
    kinds = [type(lay).__name__ for lay in twin.layers]
    # BN moved before the pooling (folded into the convolution by the converter), ReLU where the sign was
    assert kinds == ["Rescaling", "Conv2D", "BatchNormalization", "ReLU", "Conv2D", "BatchNormalization", "ReLU",
                     "MaxPooling2D", "Flatten", "Dense", "BatchNormalization", "ReLU", "Dense", "BatchNormalization",
                     "Activation"]
    src = [lay for lay in model.layers if type(lay).__name__ in ("QuantConv2D", "QuantDense")]
    dst = [lay for lay in twin.layers if type(lay).__name__ in ("Conv2D", "Dense")]
    assert [lay.get_weights()[0].shape for lay in src] == [lay.get_weights()[0].shape for lay in dst]
    assert twin.output_shape == model.output_shape


def test_check_outputs_accepts_rounding_and_rejects_more():
    ref = np.zeros((3, 4), np.int8)
    dev = ref.copy()
    dev[1, 2] = 1
    res = mcu_peers.check_outputs("m", "cortex-m4", dev, ref, None)
    assert (res["ref_differ"], res["ref_max_diff"], res["micro_differ"]) == (1, 1, None)
    res = mcu_peers.check_outputs("m", "cortex-m4", dev, ref, dev)
    assert (res["ref_differ"], res["micro_differ"], res["micro_max_diff"]) == (1, 0, 0)
    dev[0, 0] = 3
    with pytest.raises(RuntimeError, match="differ from TFLite's reference kernels .* by up to 3"):
        mcu_peers.check_outputs("m", "cortex-m4", dev, ref, None)
    with pytest.raises(RuntimeError, match="differ from TFLM's Python interpreter by up to 2"):
        mcu_peers.check_outputs("m", "cortex-m4", dev, dev, dev - 2 * (dev == 3))
    assert mcu_peers.check_outputs("m", "cortex-m4", dev, ref, ref, strict=False)["ref_max_diff"] == 3


@pytest.mark.targets
@pytest.mark.skipif(not tflm.available(), reason="TFLM_DIR (a TFLite Micro tree), arm-none-eabi-g++ with libstdc++ "
                    "or qemu-system-arm missing")
def test_tflm_on_cortex_m4_matches_the_python_reference(tmp_path):
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    rng = np.random.default_rng(0)
    tf.keras.utils.set_random_seed(0)
    net = mcu_peers.family_cnn(tf, 4, 8)  # untrained: random weights still exercise every kernel
    x = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(net.inputs, net.layers[-2].output))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = x[:20].astype(np.float32)[..., None]
    conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    fb = conv.convert()
    objects = tflm.library("cortex-m4", "-O2", cache=os.environ.get("TFLM_OBJECTS"))
    r = mcu_peers.run_tflm("t", fb, x[20:], rng.integers(0, 10, 20), "cortex-m4", tmp_path, objects, tf, print)
    assert r["checked"] == 20 and r["ref_max_diff"] <= 1
    assert r["mean_insn"] > 0 and r["max_insn"] >= r["mean_insn"]
    assert r["model_bytes"] == len(fb) and r["code"] > 0 and r["arena"] % 16 == 0 and r["stack"] > 0


# ------------------------------------------- issue 21: TFLM int8 twins of the published architectures
import published_peers  # noqa: E402


def _quant_layers(model):
    return [lay for lay in model.layers if type(lay).__name__ in ("QuantConv2D", "QuantDense")]


@pytest.mark.parametrize("name", [pytest.param("samy_bnn", marks=pytest.mark.slow),
                                  pytest.param("embedia_person", marks=pytest.mark.slow), "float_stem_mnist", "residual_bnn"])
def test_published_twin_has_the_layers_and_sizes(name):
    """Sources of the architectures: tests/helpers/published_models.py (Binary Samy: SepehrMohammady/
    BNN-WakeVision-STM32 samy_cbinnn/samy_bnn.h5; EmbedIA: Embed-ML/EmbedIA person_detection_binary_72acc.h5;
    the float-stem MNIST BNN of issue 21) and bench/int8_mode.py residual_bnn."""
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    model, x = published_peers.build(name)
    twin = published_peers.twin(model, tf)
    kinds = published_peers.kinds(twin)
    assert not any(k.startswith("Quant") for k in kinds)
    signs = [lay for lay in _quant_layers(model) if lay.input_quantizer is not None]
    assert sum(k == "ReLU" for k in kinds) - sum(k == "ReLU" for k in published_peers.kinds(model)) == len(signs)
    # every weight layer kept, in order, with its shape (binary layers as float Conv2D / Dense)
    weights = lambda m: [lay.get_weights()[0].shape for lay in m.layers  # noqa: E731
                         if type(lay).__name__ in ("Conv2D", "QuantConv2D", "Dense", "QuantDense")]
    assert weights(twin) == weights(model)
    assert twin.count_params() == model.count_params()
    assert twin.output_shape == model.output_shape
    assert twin(x[:2]).shape == model(x[:2]).shape
    # no batch norm left between a conv and its pool's output: the converter folds it into the conv
    for i, k in enumerate(kinds[:-1]):
        if k in ("MaxPooling2D", "AveragePooling2D") and kinds[i - 1] in ("Conv2D", "Dense"):
            assert kinds[i + 1] != "BatchNormalization", kinds


def test_twin_config_moves_batch_norm_and_activation_where_they_fold():
    from keras_ebnn import import_larq
    tf, lq = import_larq()
    L = tf.keras.layers
    model = tf.keras.Sequential([
        L.InputLayer((12, 12, 1)), lq.layers.QuantConv2D(4, 3, activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(2), lq.layers.QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
        L.MaxPooling2D(2), L.BatchNormalization(),
        lq.layers.QuantConv2D(4, 1, input_quantizer="ste_sign", kernel_quantizer="ste_sign", activation="relu"),
        L.MaxPooling2D(1), L.BatchNormalization(), L.Flatten(), L.Dense(3)])
    twin = published_peers.twin(model, tf)
    assert published_peers.kinds(twin) == [
        "InputLayer", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "ReLU", "Conv2D",
        "BatchNormalization", "MaxPooling2D", "ReLU", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
        "Flatten", "Dense"]
    acts = [lay.get_config().get("activation") for lay in twin.layers]
    assert acts[1] == acts[6] == acts[10] == "linear" and acts[3] == acts[12] == "relu"


def test_twin_converts_to_full_integer_int8():
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    model, x = published_peers.build("residual_bnn")
    fb = mcu_peers.convert_int8(published_peers.twin(model, tf), x, tf)
    assert tflm.op_names(fb) == ["ADD", "CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "RELU", "SOFTMAX"]
    details = tf.lite.Interpreter(model_content=fb)
    assert details.get_input_details()[0]["dtype"] == np.int8 and details.get_output_details()[0]["dtype"] == np.int8
    xq = mcu_peers.quantize_input(fb, x[:3], tf)
    assert mcu_peers.reference_outputs(fb, xq, tf).shape == (3, 10)


def test_published_peers_skips_cleanly_without_tflm(monkeypatch, capsys):
    monkeypatch.delenv("TFLM_DIR", raising=False)
    assert published_peers.main(["--no-write"]) == 0
    assert "skipped: needs TFLM_DIR" in capsys.readouterr().out
    assert mcu_peers.main(["--cifar-resnet8", "--no-write"]) == 0
    assert "skipped: needs TFLM_DIR" in capsys.readouterr().out


def test_published_tables_put_every_engine_side_by_side():
    rows = [{"model": "samy_bnn", "cpu": "cortex-m7", "engine": e, "instructions": i, "flash": f, "model_bytes": 1,
             "arena": a, "static": s, "stack": 100, "check": "c"}
            for e, i, f, a, s in (("keras-ebnn exact", 2e7, 10000, 6000, 0), ("keras-ebnn int8", 1e7, 8000, 9900, 0),
                                  ("TFLM + CMSIS-NN int8", 3e7, 80000, 50000, 1900))]
    tab = published_peers.rows_table(rows)
    assert "CBin-NN" in tab and "45.0 M" in tab and "52,000" in tab
    rat = published_peers.ratios(rows)
    assert "1.50x / 8.0x / 8.5x" in rat and "3.00x / 10.0x / 5.2x" in rat


def test_tflm_sources_only_the_kernels_of_the_operators(tmp_path):
    src = tmp_path / "src"
    kern = src / "tensorflow/lite/micro/kernels"
    for f in ("tensorflow/lite/micro/micro_interpreter.cpp", "tensorflow/lite/micro/test_helpers.cpp",
              "tensorflow/lite/micro/kernels/kernel_util.cpp", "tensorflow/lite/micro/kernels/conv_common.cpp",
              "tensorflow/lite/micro/kernels/cmsis_nn/conv.cpp", "tensorflow/lite/micro/kernels/cmsis_nn/svdf.cpp",
              "tensorflow/lite/micro/kernels/gather.cpp", "third_party/cmsis_nn/Source/ConvolutionFunctions/a.c",
              "third_party/cmsis_nn/Source/NNSupportFunctions/b.c", "third_party/cmsis_nn/Source/SVDFunctions/c.c"):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text("")
    names = lambda files: sorted(str(p.relative_to(src)) for p in files)  # noqa: E731
    assert len(tflm.sources(src)) == 9  # everything but the skipped test helpers
    assert names(tflm.sources(src, ["CONV_2D"])) == [
        "tensorflow/lite/micro/kernels/cmsis_nn/conv.cpp", "tensorflow/lite/micro/kernels/conv_common.cpp",
        "tensorflow/lite/micro/kernels/kernel_util.cpp", "tensorflow/lite/micro/micro_interpreter.cpp",
        "third_party/cmsis_nn/Source/ConvolutionFunctions/a.c", "third_party/cmsis_nn/Source/NNSupportFunctions/b.c"]
    assert kern.is_dir()
    with pytest.raises(ValueError, match="GATHER"):
        tflm.sources(src, ["GATHER"])


def test_write_section_after(monkeypatch, tmp_path):
    import common
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# b\n\n<!-- bench:a -->\nA\n<!-- /bench:a -->\n\n<!-- bench:z -->\nZ\n<!-- /bench:z -->\n")
    monkeypatch.setattr(common, "BENCHMARKS", doc)
    common.write_section("b", "B", "cmd b", after="a")
    text = doc.read_text()
    assert text.index("bench:a -->") < text.index("<!-- bench:b -->") < text.index("<!-- bench:z -->")
    common.write_section("b", "B2", "cmd b", after="z")  # an existing section stays where it is
    text = doc.read_text()
    assert "B2" in text and text.index("<!-- bench:b -->") < text.index("<!-- bench:z -->")
    common.write_section("c", "C", "cmd c", after="missing")
    assert doc.read_text().rstrip().endswith("<!-- /bench:c -->")


# ------------------------------------------------------------- issue 24: the MLPerf Tiny ResNet-8 peer
def test_resnet8_is_the_mlperf_tiny_reference():
    """mlcommons/tiny benchmark/training/image_classification: ResNet-8, 77.7 k parameters, 12.5 M MACs."""
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    model = mcu_peers.resnet8(tf)
    weights = sum(int(np.prod(w.shape)) for lay in model.layers if type(lay).__name__ in ("Conv2D", "Dense")
                  for w in lay.get_weights())
    assert weights == 77_706 and mcu_peers.macs(model) == 12_501_632
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert sum(type(lay).__name__ == "Add" for lay in model.layers) == 3


def test_resnet8_model_random_or_loaded_weights(tmp_path):
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    random_model, how = mcu_peers.resnet8_model(tf)
    assert how.startswith("random weights")
    other = mcu_peers.resnet8(tf)
    other.set_weights([w + 1 for w in random_model.get_weights()])
    other.save(tmp_path / "r8.keras")
    loaded, how = mcu_peers.resnet8_model(tf, weights=tmp_path / "r8.keras")
    assert "r8.keras" in how and all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), other.get_weights()))


@pytest.mark.slow
def test_resnet8_model_trains_within_its_budget():
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 64)
    random_model, _ = mcu_peers.resnet8_model(tf)
    trained, how = mcu_peers.resnet8_model(tf, data=((x, y), (x[:8], y[:8])), epochs=3, minutes=0, log=lambda s: None)
    assert how.startswith("trained 1 of 3 epochs") and "CIFAR-10 (JPEG copy)" in how  # minutes=0: stops after one
    assert not all(np.array_equal(a, b) for a, b in zip(trained.get_weights(), random_model.get_weights()))


@pytest.mark.targets
@pytest.mark.skipif(not tflm.available(), reason="TFLM_DIR (a TFLite Micro tree), arm-none-eabi-g++ with libstdc++ "
                    "or qemu-system-arm missing")
def test_published_twin_on_cortex_m4_matches_the_python_reference(tmp_path):
    from keras_ebnn import import_larq
    tf, _ = import_larq()
    model, x = published_peers.build("float_stem_mnist")
    fb = mcu_peers.convert_int8(published_peers.twin(model, tf), x, tf)
    objects = tflm.library("cortex-m4", "-O2", cache=os.environ.get("TFLM_OBJECTS"), ops=tflm.op_names(fb))
    r = published_peers.measure_tflm("fs", fb, x, "cortex-m4", tmp_path, objects, tf)
    assert r["instructions"] > 0 and r["model_bytes"] == len(fb) and r["arena"] % 16 == 0 and r["stack"] > 0
    assert r["flash"] > r["model_bytes"] and r["static"] > 0
