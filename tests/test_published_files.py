"""Every published Larq model file in $EBNN_DATA_DIR/published-models (issue 22, "Done when"): 24 files
by 10 authors (sources: that folder's SOURCES.txt; never copied into the project). Skipped without the
folder.

Each file with an architecture is loaded the ordinary way (the safe loader; SavedModel folders with
trust_model=True, as --trust-model), exported with keras_ebnn.export, compiled with the host C compiler
and run on inputs in the ranges the repositories feed (their preprocessing differs, see the folder's
README.txt: x / 255 in [0, 1], x / 127.5 - 1 in [-1, 1], binarized +-1; raw 0..255 for a model that
starts with Rescaling): the C classes must equal Keras's on every input. Weights-only files must be
refused with a clear ModelFileError ("weights-only").

flessent_BNN_model.h5 is a custom Sequential subclass 'BNN': refused by the safe loader, loaded the way
a user does with --trust-model --custom-objects (custom_objects={"BNN": Sequential}).
"""
import os
from pathlib import Path

import numpy as np
import pytest

from keras_ebnn import export, import_larq
from keras_ebnn.frontdoor import host
from keras_ebnn.errors import ModelFileError, UnsafeModelError
from keras_ebnn.frontend.lowering import load_model

ROOT = Path(os.environ.get("EBNN_DATA_DIR") or "/nonexistent") / "published-models"
FILES = sorted(p.name for p in ROOT.iterdir() if not p.name.endswith(".txt")) if ROOT.is_dir() else []
WEIGHTS_ONLY = {"bird_bnn_mel_spec_3_conv_layer_model_binary_weights.h5", "marin_mnist_nn_quantized_zeroone_FC.h5"}
N = 12  # inputs per range

pytestmark = [pytest.mark.skipif(not FILES, reason="EBNN_DATA_DIR/published-models not available"),
              pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")]


def _inputs(model):
    rng = np.random.default_rng(22)
    shape = tuple(model.input_shape[1:])
    if type(model.layers[0]).__name__ == "Rescaling":
        return {"raw 0..255": rng.integers(0, 256, (2 * N,) + shape).astype(np.uint8)}
    return {"[0, 1]": rng.uniform(0, 1, (N,) + shape).astype(np.float32),
            "[-1, 1]": rng.uniform(-1, 1, (N,) + shape).astype(np.float32),
            "+-1": np.where(rng.random((N,) + shape) < 0.5, -1.0, 1.0).astype(np.float32)}


def _c_equals_keras(model, name, tmp_path):
    tf, _ = import_larq()
    res = export(model, tmp_path / "out", name="pub")
    kind = getattr(res.lowered, "kind", "chain")
    for label, x in _inputs(model).items():
        classes, _ = host.predict_c(res.lowered, tmp_path / "out", "pub", x.reshape(len(x), -1))
        keras = np.asarray(model(tf.constant(x.astype(np.float32)), training=False))
        keras = keras.reshape(len(x), -1).argmax(1)
        np.testing.assert_array_equal(classes, keras, err_msg=f"{name}: inputs {label}")
    print(f"{name}: {kind}, C classes = Keras classes on {sum(len(x) for x in _inputs(model).values())} inputs")


@pytest.mark.parametrize("name", FILES)
def test_published_file(name, tmp_path):
    tf, _ = import_larq()
    path = ROOT / name
    if name in WEIGHTS_ONLY:
        with pytest.raises(ModelFileError, match="weights-only"):
            load_model(path)
        return
    trust, custom = path.is_dir(), None
    if name == "flessent_BNN_model.h5":
        with pytest.raises(UnsafeModelError, match="'BNN'"):
            load_model(path)
        trust, custom = True, {"BNN": tf.keras.Sequential}
    model = load_model(path, trust_model=trust, custom_objects=custom)
    _c_equals_keras(model, name, tmp_path)
