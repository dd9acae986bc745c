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
