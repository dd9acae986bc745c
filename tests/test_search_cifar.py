"""keras_ebnn.train.search_space.CIFAR10_SPACE: the binary VGG family for 32x32x3 (CIFAR-10) in the search.

Candidates sampled from the space build, lower to the chain exporter and fit their geometry; a search
over a narrowed copy runs end to end on generated 32x32x3 images (training replaced by a stand-in, as
tests/test_search.py does for the machinery); the default space is untouched."""
import io
from dataclasses import replace

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from keras_ebnn.train import search as S  # noqa: E402
from keras_ebnn.train.search_space import CIFAR10_SPACE, DEFAULT_SPACE, SPACES, Choice  # noqa: E402


def test_sampled_candidates_build_and_lower():
    from keras_ebnn.exporters.c import memory_plan
    from keras_ebnn.frontend.lowering import lower
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(3):
        trial = study.ask()
        params = CIFAR10_SPACE.suggest(trial)
        assert {f"stage{i}_filters" for i in range(1, 5)} <= set(params)  # fixed-length genome
        model = CIFAR10_SPACE.build(params, name="cand")
        assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
        lowered = lower(model)  # the chain exporter: integer stem on uint8, binary convs
        assert lowered.blocks[0].kind == "input_conv"
        convs = sum(int(params[f"stage{i}_convs"]) for i in range(1, int(params["stages"]) + 1))
        assert sum(b.kind == "binary_conv" for b in lowered.blocks) == convs
        assert memory_plan(lowered)["totals"]["input_bytes"] == 3072
        desc = CIFAR10_SPACE.describe(params)
        assert "|" not in desc and desc.count("] p2") == int(params["stages"])
        seen.add(desc)
        study.tell(trial, 0.0)
    assert len(seen) == 3
    assert SPACES["default"] is DEFAULT_SPACE and SPACES["cifar10"] is CIFAR10_SPACE


def test_geometry_error_on_a_small_input():
    params = dict(stem_filters=8, stem_kernel=3, stem_pool=2, stages=4, dense_layers=0, dense_units=64,
                  output_scale=False, lr=1e-3, shift=0, hflip=False, bn_reestimate=True,
                  **{f"stage{i}_{w}": v for i in range(1, 5) for w, v in (("filters", 8), ("convs", 1))})
    CIFAR10_SPACE.build(params)  # 32 -> 1x1 after five poolings: fits
    with pytest.raises(ValueError, match="poolings do not fit"):
        CIFAR10_SPACE.build(params, input_shape=(16, 16, 3))


def test_search_runs_on_the_cifar_space(tmp_path, monkeypatch):
    small = replace(CIFAR10_SPACE, stem_filters=Choice((8, 16)), stages=Choice((2,)), max_stages=2,
                    stage_filters=Choice((8, 16)), stage_convs=Choice((1,)), dense_layers=Choice((0,)))
    seen = []

    def fake_train(model, params, train, val, epochs, **kw):
        seen.append((model.input_shape, params["hflip"]))
        return 0.3 + params["stem_filters"] / 1000
    monkeypatch.setattr(S, "train_candidate", fake_train)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 32, 32, 3)).astype(np.uint8)
    y = rng.integers(0, 10, 300)
    res = S.search(data=((x[:250], y[:250]), (x[250:], y[250:])), max_flash=200_000, cpu="cortex-m4", trials=3,
                   epochs=1, val_size=50, out=tmp_path, space=small, final=False, seed=1, sampler="random",
                   stream=io.StringIO(), measure="model")
    assert res.complete == 3 and seen and all(s[0] == (None, 32, 32, 3) for s in seen)
    assert "[" in (tmp_path / "pareto.md").read_text()


def test_train_candidate_passes_hflip(monkeypatch):
    from keras_ebnn.train import training
    got = {}
    monkeypatch.setattr(training, "train", lambda *a, **kw: got.update(kw))
    monkeypatch.setattr(training, "evaluate", lambda *a, **kw: 0.5)
    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, int)
    S.train_candidate(None, dict(lr=1e-3, shift=2, hflip=True, bn_reestimate=False), (x, y), (x, y), 1)
    assert got["hflip"] is True and got["max_shift"] == 2
