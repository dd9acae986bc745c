"""Published Larq models (tests/helpers/published_models.py) through the graph lowering.

Each one either lowers and matches Keras under the checks of tests/test_graph_dag.py (bits of
integer-accumulator blocks identical, float near-ties only, logits within tolerance, identical
classes), or is refused with an UnsupportedModelError naming the expected layer class -- only the
out-of-scope multi-bit quantizer models are expected to be refused.
"""
import pytest

from keras_ebnn import UnsupportedModelError
from keras_ebnn.ir.graph import lower_graph
from keras_ebnn.planning.graph_memory import check_plan, plan_memory
from helpers.published_models import PUBLISHED, build
from test_graph_dag import check_graph_against_keras


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_model(name):
    _, expected = PUBLISHED[name]
    model, x = build(name)
    if expected == "lowers":
        graph, stats = check_graph_against_keras(model, x)
        plan = plan_memory(graph)
        check_plan(plan)
        kinds = sorted({op.kind if op.kind != "block" else op.params["block"].kind for op in graph.ops})
        print(f"{name}: lowers, {len(graph.ops)} ops ({', '.join(kinds)}), arena {plan['arena_bytes']} B, "
              f"{stats}")
    else:
        layer_class = expected.split(": ")[1]
        with pytest.raises(UnsupportedModelError) as err:
            lower_graph(model)
        assert err.value.layer_class == layer_class and err.value.layer_name, str(err.value)
        assert err.value.layer_name in str(err.value)
        print(f"{name}: refused at {err.value.layer_name} ({layer_class}): {err.value.reason}")


def test_how_many_lower():
    lowers = [n for n, (_, e) in PUBLISHED.items() if e == "lowers"]
    print(f"{len(lowers)} of {len(PUBLISHED)} published models lower: {', '.join(sorted(lowers))}")
    assert len(lowers) >= 12
