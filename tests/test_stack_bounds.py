"""The report's RAM figure holds for the default build (issue 15): keras_ebnn.planning.stackcheck's deepest
call chain of every shipped model's NAME_predict, built for Cortex-M0+, Cortex-M3 and the ATmega328P
with the default options, is below the stack figure of memory_plan; and the chain computation itself
(synthetic call graphs, small C programs that must be refused)."""
import sys
from pathlib import Path

import pytest

from helpers.common import ROOT
from keras_ebnn.planning import stackcheck
from keras_ebnn.exporters.c import STACK_BYTES, export_c, memory_plan, stack_kernel_keys
from keras_ebnn.frontend.lowering import load_model, lower
from keras_ebnn.planning.stackcheck import StackCheckError, deepest_chain

sys.path.insert(0, str(ROOT / "bench"))
from common import MODELS  # noqa: E402

SHIPPED = sorted(MODELS)


# --- the chain computation on synthetic graphs ---------------------------------------------------

def test_deepest_chain_adds_frames_along_the_deepest_path():
    frames = {"predict": 8, "conv": 100, "helper": 30, "dense": 128, "leaf": 4}
    calls = {"predict": ["conv", "dense"], "conv": ["helper", "leaf"], "dense": ["leaf"]}
    chain = deepest_chain(frames, calls, "predict")
    assert chain.bytes == 8 + 128 + 4  # dense (128 + 4) beats conv (100 + 30)
    assert chain.path == [("predict", 8), ("dense", 128), ("leaf", 4)]
    assert deepest_chain(frames, calls, "conv").bytes == 130
    assert deepest_chain(frames, calls, "leaf").bytes == 4


def test_deepest_chain_refuses_recursion_and_unknown_frames():
    with pytest.raises(StackCheckError, match="recursion: b -> c -> b"):
        deepest_chain({"a": 1, "b": 2, "c": 3}, {"a": ["b"], "b": ["c"], "c": ["b"]}, "a")
    with pytest.raises(StackCheckError, match="no stack figure for mystery .called by a"):
        deepest_chain({"a": 1}, {"a": ["mystery"]}, "a")


def test_read_su_refuses_unbounded_frames(tmp_path):
    su = tmp_path / "x.su"
    su.write_text("x.c:3:5:f\t16\tstatic\nx.c:9:5:g\t40\tdynamic,bounded\n")
    assert stackcheck.read_su(su) == {"f": 16, "g": 40}
    su.write_text("x.c:3:5:f\t16\tstatic\nx.c:9:5:vla\t24\tdynamic\n")
    with pytest.raises(StackCheckError, match="vla.*dynamic and unbounded"):
        stackcheck.read_su(su)


def test_stack_table_covers_every_target_build_and_kernel():
    keys = {"input_conv_int", "input_conv_f32", "binary_conv", "binary_dense", "output_dense", "predict"}
    for target in ("cortex-m0plus", "cortex-m3", "cortex-m4", "avr"):
        for build in ("default", "small"):
            assert set(STACK_BYTES[target][build]) == keys, (target, build)
            assert all(v > 0 and v % 16 == 0 for v in STACK_BYTES[target][build].values())


# --- real compilers ------------------------------------------------------------------------------

def _needs(target):
    return pytest.mark.skipif(not stackcheck.available(target), reason=f"{stackcheck.TARGETS[target].cc} not installed")


PROGRAM = """
#include <stdint.h>
__attribute__((noinline)) int NAME_predict(int n);
__attribute__((noinline)) int again(int n) { return n > 1 ? NAME_predict(n - 1) ^ NAME_predict(n - 2) : 1; }
__attribute__((noinline)) int leaf(volatile uint8_t *p) { return p[0] + p[1]; }
__attribute__((noinline)) int mid(int n)
{ volatile uint8_t buf[200]; buf[0] = (uint8_t)n; buf[1] = 1; return leaf(buf) + n / 7; }
int NAME_predict(int n) { volatile uint8_t big[64]; big[0] = (uint8_t)n; return mid(n) + big[0] + EXTRA; }
"""


@pytest.mark.targets
@pytest.mark.parametrize("target", ["cortex-m0plus", "avr"])
def test_stackcheck_on_a_small_program(target, tmp_path, capsys):
    """A known chain: NAME_predict (64 B array) -> mid (200 B array, a division: a library call on
    both cores) -> leaf. Then a function pointer, recursion and a VLA must be refused."""
    if not stackcheck.available(target):
        pytest.skip(f"{stackcheck.TARGETS[target].cc} not installed")
    (tmp_path / "NAME.h").write_text("int NAME_predict(int n);\n")
    (tmp_path / "NAME.c").write_text(PROGRAM.replace("EXTRA", "0"))
    chain = stackcheck.analyze(tmp_path, target, roots=["NAME_predict"])["NAME_predict"]
    names = [n for n, _ in chain.path]
    assert names[:2] == ["NAME_predict", "mid"], chain
    assert chain.bytes >= 64 + 200, chain
    assert chain.bytes < 64 + 200 + 120, chain  # saved registers and a small library routine at most
    assert stackcheck.main([str(tmp_path), "--target", target, "-Os", "--root", "NAME_predict"]) == 0
    assert capsys.readouterr().out.startswith("NAME_predict: ")

    bad = {"function pointer": "((int (*)(int))(uintptr_t)n)(n)",
           "recursion": "again(n)"}
    for what, extra in bad.items():
        (tmp_path / "NAME.c").write_text(PROGRAM.replace("EXTRA", extra))
        with pytest.raises(StackCheckError, match="indirect" if what == "function pointer" else "recursion"):
            stackcheck.analyze(tmp_path, target, roots=["NAME_predict"])
    (tmp_path / "NAME.c").write_text(PROGRAM.replace("EXTRA", "0") + "int vla(int n) { volatile char a[n]; a[0] = 1;"
                                     " return a[0]; }\n")
    with pytest.raises(StackCheckError, match="dynamic and unbounded"):
        stackcheck.analyze(tmp_path, target, roots=["NAME_predict"])
    assert stackcheck.main([str(tmp_path), "--target", target]) == 1
    assert "dynamic and unbounded" in capsys.readouterr().err


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> (lowered model, C export folder) of every shipped model."""
    out = {}
    for name in SHIPPED:
        lowered = lower(load_model(ROOT / MODELS[name][0]), name)
        folder = tmp_path_factory.mktemp(name)
        export_c(lowered, folder, name)
        out[name] = (lowered, folder)
    return out


@pytest.mark.targets
@pytest.mark.parametrize("target", ["cortex-m0plus", "cortex-m3", "avr"])
def test_report_ram_bounds_the_default_build(target, exports):
    """For each shipped model, built as the docs say (no -D option; -O2 for Cortex-M as in the README,
    -Os for AVR as the Arduino core; m15_mnist at the other level too), the report's RAM figure (arena + stack
    bound, for this target and for the default: all targets) is at least the arena + the deepest
    stack chain of NAME_predict."""
    if not stackcheck.available(target):
        pytest.skip(f"{stackcheck.TARGETS[target].cc} not installed")
    for name, (lowered, folder) in exports.items():
        plan_target, plan_any = memory_plan(lowered, target=target), memory_plan(lowered)
        assert plan_any["stack"]["targets"] == ["cortex-m0plus", "cortex-m3", "cortex-m4", "avr"]
        other = "-Os" if stackcheck.TARGETS[target].default_opt == "-O2" else "-O2"
        for opt in [stackcheck.TARGETS[target].default_opt] + ([other] if name == "m15_mnist" else []):
            chains = stackcheck.analyze(folder, target, opt)
            deepest = max(c.bytes for c in chains.values())
            need = plan_target["arena_bytes"] + deepest
            print(f"{target} {opt} {name}: chain {chains[name + '_predict']}; report stack "
                  f"{plan_target['totals']['stack_bytes_estimate']} B (any target: "
                  f"{plan_any['totals']['stack_bytes_estimate']} B)")
            assert plan_target["totals"]["ram_bytes"] >= need, (name, opt, str(chains[name + "_predict"]))
            assert plan_any["totals"]["ram_bytes"] >= need
            # and not a bound that says nothing: within 25% + 48 B of the measured chain
            assert plan_target["totals"]["stack_bytes_estimate"] <= 1.25 * deepest + 48, (name, opt, deepest)


@pytest.mark.targets
@pytest.mark.skipif(not stackcheck.available("cortex-m3"), reason="arm-none-eabi-gcc not installed")
def test_small_build_figure_bounds_the_small_build(exports):
    """build="small" (-DEBNN_CHUNK=8 -DEBNN_LOW_STACK=1) bounds that build's chain on Cortex-M3."""
    lowered, folder = exports["m15_mnist"]
    chains = stackcheck.analyze(folder, "cortex-m3", "-O2", ["-DEBNN_CHUNK=8", "-DEBNN_LOW_STACK=1"])
    small = memory_plan(lowered, target="cortex-m3", build="small")["totals"]["stack_bytes_estimate"]
    assert max(c.bytes for c in chains.values()) <= small < memory_plan(lowered, target="cortex-m3")["stack"]["bytes"]
    assert stack_kernel_keys(lowered) == ["binary_conv", "binary_dense", "input_conv_int", "output_dense"]


def test_memory_plan_names_the_build_it_is_for():
    lowered = lower(load_model(ROOT / MODELS["tiny_mnist"][0]), "tiny")
    plan = memory_plan(lowered)
    assert plan["stack"]["target"] == "any" and plan["stack"]["build"] == "default"
    assert plan["totals"]["stack_bytes_estimate"] == max(
        memory_plan(lowered, target=t)["totals"]["stack_bytes_estimate"] for t in STACK_BYTES)
    assert memory_plan(lowered, target="32bit")["stack"]["targets"] == ["cortex-m0plus", "cortex-m3", "cortex-m4"]
    with pytest.raises(ValueError, match="unknown stack target 'z80'"):
        memory_plan(lowered, target="z80")
    with pytest.raises(ValueError, match="unknown build"):
        memory_plan(lowered, build="tiny")
    assert Path(stackcheck.__file__).parents[1].name == "keras_ebnn"


@pytest.mark.targets
@pytest.mark.skipif(not stackcheck.available("cortex-m3"), reason="arm-none-eabi-gcc not installed")
def test_call_graph_contains_gccs_own(exports, tmp_path):
    """Every call edge and frame of GCC's -fcallgraph-info=su (GCC >= 10) for an export is in
    stackcheck's graph (which adds what GCC's graph lacks: calls emitted by instruction patterns)."""
    import re
    import subprocess
    _, folder = exports["m15_mnist"]
    frames, calls = stackcheck.call_graph(folder, "cortex-m3", "-O2")
    edges, sizes = set(), {}
    for src in sorted(folder.glob("*.c")):
        subprocess.run([stackcheck.TARGETS["cortex-m3"].cc, "-mcpu=cortex-m3", "-mthumb", "-std=c99", "-O2",
                        "-ffunction-sections", "-fcallgraph-info=su", f"-I{folder}", "-c", str(src),
                        "-o", str(tmp_path / (src.stem + ".o"))], check=True, cwd=tmp_path)
        text = (tmp_path / (src.stem + ".ci")).read_text()

        def node(title):  # "path/file.c:name" (static) -> "file.o:name"
            return f"{Path(title.rsplit(':', 1)[0]).stem}.o:{title.rsplit(':', 1)[1]}" if ":" in title else title
        for title, size in re.findall(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes', text):
            sizes[node(title)] = int(size)
        pairs = re.findall(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', text)
        edges |= {(node(a), node(b)) for a, b in pairs}
    assert len(edges) >= 10 and len(sizes) >= 10
    for caller, callee in edges:
        assert callee in calls[caller], (caller, callee)
    for name, size in sizes.items():
        assert frames[name] == size, name
