"""The 32x32x3 binary VGG family (keras_ebnn.train.models.cifar_vgg): a tiny random instance exports through
keras_ebnn.export, its C equals the reference executor bit for bit and its classes equal Keras's."""
import numpy as np
import pytest

from keras_ebnn.train import models
from keras_ebnn.frontdoor.host import find_cc


def _calibrated(model, x):
    from keras_ebnn.train.training import reestimate_batchnorm
    rng = np.random.default_rng(1)
    for lay in model.layers:  # random BN offsets and output scales, so thresholds are not all at zero
        if hasattr(lay, "beta") and lay.beta is not None:
            lay.beta.assign(rng.normal(0, 0.3, lay.beta.shape).astype(np.float32))
    return reestimate_batchnorm(model, x)


@pytest.mark.skipif(find_cc() is None, reason="no host C compiler")
@pytest.mark.parametrize("stem_pool,stages,dense", [
    (2, ((8,), (16,)), ()),
    pytest.param(0, ((8, 8), (16,)), (16,), marks=pytest.mark.slow)])  # no stem pool, two convs a stage, hidden dense
def test_tiny_cifar_vgg_exports_exact(tmp_path, stem_pool, stages, dense):
    from keras_ebnn import export
    model = models.cifar_vgg(8, stages, dense=dense, stem_pool=stem_pool, name="tiny_cifar")
    x = np.random.default_rng(0).integers(0, 256, (48, 32, 32, 3)).astype(np.uint8)
    _calibrated(model, x)
    res = export(model, tmp_path / "out", "tiny_cifar", verify_inputs=x, verify_labels=np.zeros(48, int))
    assert type(res.lowered).__name__ == "LoweredModel"  # the chain exporter (integer stem on uint8)
    assert [b.kind for b in res.lowered.blocks][0] == "input_conv"
    assert res.c_checked and res.c_matches_reference  # C = reference bit for bit (export raises otherwise)
    keras = np.argmax(model.predict(x.astype(np.float32), verbose=0), axis=1)
    assert np.array_equal(res.classes, keras)
    assert len(set(keras.tolist())) > 1  # the check is not vacuous: the random model tells inputs apart
