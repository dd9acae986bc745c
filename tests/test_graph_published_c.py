"""Published Larq models (tests/helpers/published_models.py, each citing its source) through `keras_ebnn.export()`.

Every model either exports -- as a chain of fused blocks when it is one, else as a graph -- and its
compiled C (ASan/UBSan, -O2) matches: the reference executor (classes identical, logits bit for bit, or
within verify.C_LOGIT_TOL when the graph has tanh / sigmoid) and Keras (classes identical on the
inputs, logits or softmax probabilities within LOGIT_TOL x (1 + max |Keras value|)); or it is refused
with an UnsupportedModelError naming the expected layer (only the out-of-scope multi-bit quantizer
models). test_how_many_export records the count.
"""
import pytest

from keras_ebnn import UnsupportedModelError, export
from keras_ebnn.ir import graph_reference
from keras_ebnn.frontdoor import host
from keras_ebnn.exporters.graph_c import uses_libm
from keras_ebnn.frontdoor.verify import C_LOGIT_TOL, c_matches
from helpers.common import check_against_keras
from helpers.published_models import PUBLISHED, build

LOGIT_TOL = 1e-4
_EXPORTED = {}


@pytest.mark.skipif(host.find_cc() is None, reason="no host C compiler")
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_model_exports_and_matches_keras(name, tmp_path):
    _, expected = PUBLISHED[name]
    model, x = build(name)
    if expected != "lowers":
        layer_class = expected.split(": ")[1]
        with pytest.raises(UnsupportedModelError) as err:
            export(model, tmp_path / "out", name=name)
        assert err.value.layer_class == layer_class and err.value.layer_name in str(err.value)
        assert not (tmp_path / "out").exists()
        print(f"{name}: refused at {err.value.layer_name} ({layer_class}): {err.value.reason}")
        return
    res = export(model, tmp_path / "out", name=name, verify_inputs=x, check_c=False)
    gm = res.lowered
    graph = getattr(gm, "graph", None)
    assert res.agreement.class_flips == 0
    cls, logits = host.predict_c(gm, tmp_path / "out", name, x, sanitize=True)
    if graph is not None:
        ref = graph_reference.run(graph, x)
        tol = C_LOGIT_TOL if uses_libm(graph) else None
    else:
        ref, tol = graph_reference.run(gm, x), None
    assert c_matches(cls, logits, ref, tol), "compiled C differs from the reference executor"
    err = check_against_keras(model, gm, x, logits, cls, LOGIT_TOL)
    t = res.plan["totals"]
    how = f"graph of {len(graph.ops)} ops" if graph is not None else f"chain of {len(gm.blocks)} blocks"
    _EXPORTED[name] = how
    print(f"{name}: exported as a {how}; flash data {t['flash_data_bytes']:,} B, arena {t['arena_bytes']:,} B; "
          f"C == reference, C vs Keras max error {err:.2e}")


def test_how_many_export():
    """At least 12 of the published families export (the ones expected to lower)."""
    lowers = sorted(n for n, (_, e) in PUBLISHED.items() if e == "lowers")
    print(f"{len(lowers)} of {len(PUBLISHED)} published models export"
          + (f" (this run: {', '.join(f'{n} as a {h}' for n, h in sorted(_EXPORTED.items()))})" if _EXPORTED else ""))
    assert len(lowers) >= 12
