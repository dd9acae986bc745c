"""Export names that would collide with the runtime or the C implementation are refused (issue 14,
point 4c): the one rule (exporters/c.py name_problem / check_name) is used by export_c, export() and
the CLI (exit 2), and reads the runtime's side from its files."""
import re
import shutil

import numpy as np
import pytest

from helpers.common import ROOT
from keras_ebnn.exporters import c as cexp
from keras_ebnn.exporters.zephyr import samples_header
from helpers.randblocks import random_lowered

BAD = {
    "ebnn": "runtime's namespace",  # would write ebnn.h over the runtime's header
    "EBNN": "runtime's namespace",  # header guard EBNN_H
    "ebnn_kernels": "runtime's namespace",  # a runtime file's name
    "Ebnn_model": "runtime's namespace",
    "EBNN_OK2": "runtime's namespace",
    "__x": "reserved",
    "_X": "reserved",
    "_model": "reserved",
    "int": "keyword",
    "static": "keyword",
    "_Bool": "keyword",
    "stdint": "shadow the system header <stdint.h>",
    "String": "shadow the system header <string.h>",
    "9lives": "C identifier",
    "my-model": "C identifier",
    "modèle": "C identifier",
    "": "C identifier",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_names_are_refused_everywhere(name, tmp_path):
    from keras_ebnn import convert
    from keras_ebnn.exporting import export
    assert BAD[name] in (cexp.name_problem(name) or "")
    with pytest.raises(ValueError, match=re.escape(BAD[name])):
        cexp.check_name(name)
    model, _ = random_lowered(1)
    with pytest.raises(ValueError, match=re.escape(BAD[name])):
        cexp.export_c(model, tmp_path / "c", name)
    with pytest.raises(ValueError, match=re.escape(BAD[name])):
        export(model, tmp_path / "e", name=name, target="arduino")
    assert not any(tmp_path.iterdir())  # nothing written
    if name:  # argparse would take "" for a missing value
        code = convert.main([str(ROOT / "examples" / "models" / "paper_mnist.keras"), "-o", str(tmp_path / "cli"),
                             "--name", name, "-q"])
        assert code == 2
        assert not (tmp_path / "cli").exists()


@pytest.mark.parametrize("name", ["mnist", "model", "input", "kws_v2", "Conv", "ebnnx", "my_ebnn"])
def test_good_names_pass(name, tmp_path):
    assert cexp.name_problem(name) is None
    model, _ = random_lowered(1)
    cexp.export_c(model, tmp_path, name)
    assert (tmp_path / f"{name}.c").is_file()


def test_cli_prints_the_reason(tmp_path, capsys):
    from keras_ebnn import convert
    code = convert.main([str(ROOT / "examples" / "models" / "paper_mnist.keras"), "-o", str(tmp_path / "o"),
                         "--name", "ebnn_kernels"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --name 'ebnn_kernels' is in the runtime's namespace"), err


def test_rule_follows_the_runtime_files(tmp_path, monkeypatch):
    """The forbidden files, guards, system headers and identifiers come from the runtime's files: a
    runtime with one more file (its guard, an include and a symbol) forbids the names that would now
    collide, without any list to update."""
    rt = tmp_path / "runtime_c"
    shutil.copytree(cexp.runtime_dir(), rt)
    (rt / "extra").mkdir()
    (rt / "extra" / "dsp_util.h").write_text("#ifndef DSPX_H\n#define DSPX_H\n#include <limits.h>\n"
                                             "int kws_predict(void);\n#endif\n")
    for name in ("dsp_util", "Dspx", "limits", "kws"):
        assert cexp.name_problem(name) is None, name
    monkeypatch.setattr(cexp, "runtime_dir", lambda: rt)
    cexp._runtime_namespace.cache_clear()
    try:
        assert "runtime file" in cexp.name_problem("dsp_util")
        assert "runtime file" in cexp.name_problem("DSP_UTIL")  # case-insensitive file systems
        assert "header guard DSPX_H" in cexp.name_problem("Dspx")
        assert "<limits.h>" in cexp.name_problem("limits")
        assert "would define kws_predict" in cexp.name_problem("kws")
    finally:
        cexp._runtime_namespace.cache_clear()


def test_public_header_is_one_namespace():
    """Every identifier the public header declares starts with its stem (the prefix rule's basis)."""
    text = re.sub(r"/\*.*?\*/", " ", (cexp.runtime_dir() / cexp.PUBLIC_HEADER).read_text(), flags=re.S)
    declared = set(re.findall(r"#\s*define\s+(\w+)", text)) | set(re.findall(r"}\s*(\w+)\s*;", text)) | \
        set(re.findall(r"^\w[\w\s\*]*?\b(\w+)\s*\(", text, re.M))
    prefix = cexp.PUBLIC_HEADER.split(".")[0]
    assert len(declared) > 20
    outside = sorted(d for d in declared if not d.lower().startswith(prefix))
    assert not outside, outside


def test_generated_suffixes_cover_the_generated_code():
    """GENERATED_SUFFIXES lists every NAME_* identifier the C, Arduino and Zephyr files define."""
    seen = set()
    for seed in range(12):
        model, x = random_lowered(seed)
        header, source = cexp.generate(model, "zz")
        text = header + source + samples_header("zz", x[:2], np.zeros(2), "float")
        seen |= {t for t in re.findall(r"\bzz_\w+|\bZZ_\w+", text)}
    kinds = {b.kind for seed in range(12) for b in random_lowered(seed)[0].blocks}
    assert kinds == {"input_conv", "binary_conv", "binary_dense", "output_dense"}
    assert {"zz_predict", "zz_arena", "ZZ_H", "zz_b0_params"} <= seen
    for ident in seen:
        assert cexp.GENERATED_SUFFIXES.fullmatch(ident[3:]), ident
