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
    from keras_ebnn.frontdoor.exporting import export
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
    (rt / "extra" / "dsp_util.h").write_text("#ifndef DSPX_H\n#define DSPX_H\n#include <arm_math.h>\n"
                                             "int kws_predict(void);\n#endif\n")
    for name in ("dsp_util", "Dspx", "arm_math", "kws"):  # (limits is a C standard header: always refused)
        assert cexp.name_problem(name) is None, name
    monkeypatch.setattr(cexp, "runtime_dir", lambda: rt)
    cexp._runtime_namespace.cache_clear()
    try:
        assert "runtime file" in cexp.name_problem("dsp_util")
        assert "runtime file" in cexp.name_problem("DSP_UTIL")  # case-insensitive file systems
        assert "header guard DSPX_H" in cexp.name_problem("Dspx")
        assert "<arm_math.h>" in cexp.name_problem("arm_math")
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
    assert {"zz_predict", "zz_arena", "zz_H", "zz_b0_params"} <= seen  # case-preserving guard
    for ident in seen:
        assert cexp.GENERATED_SUFFIXES.fullmatch(ident[3:]), ident


# Issue 22 item 5: `--name stdio` / `--name Arduino` wrote stdio.h / Arduino.h, which shadow the real
# headers for anything compiled with -I on the export; exports named net and NET shared the guard NET_H.
@pytest.mark.parametrize("name, kind", [("stdio", "C standard"), ("Arduino", "Arduino"), ("math", "C standard"),
                                        ("STRING", "C standard"), ("threads", "C standard"),
                                        ("unistd", "POSIX"), ("pthread", "POSIX"), ("Wire", "Arduino"),
                                        ("WString", "Arduino"), ("pins_arduino", "Arduino"), ("SPI", "Arduino")])
def test_names_shadowing_standard_headers_are_refused(name, kind, tmp_path):
    from keras_ebnn import convert
    problem = cexp.name_problem(name)
    assert problem and "shadow the" in problem and f"header <{name.lower()}.h>" in problem
    assert kind in problem or "the code includes" in problem  # (math.h: the runtime includes it too)
    code = convert.main([str(ROOT / "examples" / "models" / "paper_mnist.keras"), "-o", str(tmp_path / "cli"),
                         "--name", name, "-q"])
    assert code == 2 and not (tmp_path / "cli").exists()


def test_header_lists_are_complete():
    """Every C11 standard header, the POSIX ones a program commonly includes and the Arduino core's."""
    c11 = ("assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal stdalign "
           "stdarg stdatomic stdbool stddef stdint stdio stdlib stdnoreturn string tgmath threads time uchar "
           "wchar wctype").split()
    assert len(c11) == 29
    common = "unistd fcntl pthread dirent poll termios syslog Arduino Print Stream HardwareSerial EEPROM Servo".split()
    for stem in c11 + common:
        assert cexp.name_problem(stem) is not None, stem


def test_names_differing_in_case_link_into_one_program(tmp_path):
    """net and NET exported into one folder: both headers included by one program (each guard its
    own), both models run, each gives its own reference classes."""
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.frontdoor import host
    if host.find_cc() is None:
        pytest.skip("no host C compiler")
    models, exp = {}, tmp_path / "export"
    for name, seed in (("net", 3), ("NET", 5)):
        model, x = random_lowered(seed)
        cexp.export_c(model, exp, name)
        models[name] = (model, x)
    assert "#ifndef net_H" in (exp / "net.h").read_text() and "#ifndef NET_H" in (exp / "NET.h").read_text()
    main = tmp_path / "main.c"
    main.write_text(host.program_source(["net", "NET"]))
    exe = tmp_path / "both"
    import subprocess
    proc = subprocess.run([host.find_cc(), *host.STRICT, "-I", str(exp), *host.c_sources(exp),
                           str(main), "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    args = []
    for name, (model, x) in models.items():
        (tmp_path / f"{name}.in").write_bytes(np.ascontiguousarray(x, dtype=model.input.dtype).tobytes())
        args += [str(tmp_path / f"{name}.in"), str(tmp_path / f"{name}.out")]
    subprocess.run([str(exe), *args], check=True)
    for name, (model, x) in models.items():
        rec = np.dtype([("cls", "<i4"), ("logits", "<f4", (model.num_classes,))])
        out = np.frombuffer((tmp_path / f"{name}.out").read_bytes(), dtype=rec)
        assert np.array_equal(out["cls"], graph_reference.run(model, x)["classes"]), name
