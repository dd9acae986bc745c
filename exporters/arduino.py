"""Arduino back end: an Arduino (and PlatformIO) library folder around the C export.

    OUT/library.properties                              Arduino library manifest
    OUT/library.json                                    PlatformIO library manifest
    OUT/src/NAME.h, NAME.c, ebnn*.h, *.inc, avr/        the C export (weights in PROGMEM on AVR; the
                                                        kernels are compiled inside NAME.c)
    OUT/examples/NAME/NAME.ino                          example sketch (see below)

Install by copying OUT into the sketchbook's libraries/ folder (or `arduino-cli lib install --zip-path`
on a zip of it; in PlatformIO, put it in the project's lib/ folder or name its path in lib_deps); the
example appears under File > Examples.

The example sketch classifies real inputs, never placeholders. It embeds, in flash (PROGMEM on AVR),
in this order of preference:
  1. the verification inputs and labels given to the export (`--verify-data`), else
  2. for models with a 28x28x1 input, MNIST test images from the shipped sample
     examples/data/mnist_test_sample.npz (its first 8, shipped as mnist_sketch_samples.npz; uint8 pixels as they are,
     float inputs scaled to [0, 1]; labels printed only for 10-class models),
and prints each input's class (and label) and the accuracy over Serial. When neither exists (or no
sample fits the board's flash), the sketch reads inputs over Serial instead (SERIAL_PROTOCOL below).
Only one input buffer lives in SRAM.
"""
from pathlib import Path

import numpy as np

from .c import avr_reach_problems, export_c

MAX_SAMPLES = 8  # inputs embedded in the example sketch at most
# The first MAX_SAMPLES images of examples/data/mnist_test_sample.npz, shipped beside this module (package
# data, so an installed wheel has them too; tests/test_boards.py checks they equal that sample's).
MNIST_SAMPLE = Path(__file__).resolve().parent / "mnist_sketch_samples.npz"
VERSION = "0.1.0"

PROPERTIES = """name={name}
version={version}
author=keras-ebnn
maintainer=keras-ebnn
sentence=Binarized neural network '{name}' exported by keras-ebnn.
paragraph=Call {name}_predict(input, scores) to classify one input; see src/{name}.h.
category=Data Processing
url=https://pypi.org/project/keras-ebnn/
architectures=*
includes={name}.h
"""

SERIAL_PROTOCOL = """Serial protocol (115200 baud, 8N1): the sketch prints "ready <INPUT_LEN> <uint8|float32>", then
reads one input of INPUT_LEN values in NHWC order as raw bytes: uint8 inputs one byte per value,
float32 inputs four bytes per value (IEEE 754, little-endian); it then prints
"image <i>: class <c> time_us <t>" and "ready ..." again, forever."""


def library_json(name, description=None):
    """The PlatformIO manifest (a dict) of the exported library `name`.

    Fields as documented for library.json (docs.platformio.org, "library.json"): name, version
    (semver), description, keywords (lowercase), frameworks/platforms, headers, examples, export.
    The sources are in src/ (PlatformIO's default srcDir), so no build section is needed."""
    return {
        "name": name,
        "version": VERSION,
        "description": description or f"Binarized neural network '{name}' exported by keras-ebnn: "
                                      f"call {name}_predict(input, scores) (src/{name}.h).",
        "keywords": ["neural network", "bnn", "binarized", "keras-ebnn", "machine learning"],
        "homepage": "https://pypi.org/project/keras-ebnn/",
        "frameworks": ["arduino"],
        "platforms": ["*"],
        "headers": [f"{name}.h"],
        "examples": [{"name": name, "base": f"examples/{name}", "files": [f"{name}.ino"]}],
        "export": {"include": ["src", "examples", "library.json", "library.properties"]},
    }


def mnist_samples():
    """(x uint8 (N,28,28,1), y uint8 (N,)) of the shipped MNIST sample images, or None if missing."""
    if not MNIST_SAMPLE.is_file():
        return None
    with np.load(MNIST_SAMPLE) as data:
        return data["x"], data["y"]


def choose_samples(model, images=None, labels=None, max_samples=MAX_SAMPLES, max_bytes=None):
    """The inputs the example sketch embeds: (images, labels or None, source text), or
    (None, None, reason) when the sketch is to read its inputs over Serial.

    images/labels: the verification inputs given to the export (used first). Otherwise MNIST test
    images from the shipped sample for a 28x28x1 model. max_bytes: the flash left for them on the
    board (None: no limit); fewer samples are embedded when they would not fit."""
    dtype = np.dtype(model.input.dtype)
    source = "the verification inputs given to the export"
    if images is None or len(images) == 0:
        images = labels = None
        if tuple(model.input.shape) == (28, 28, 1):
            sample = mnist_samples()
            if sample is not None:
                x, y = sample
                images = x if dtype == np.uint8 else x.astype(np.float32) / np.float32(255)
                labels = y if model.num_classes == 10 else None
                source = ("MNIST test images from keras-ebnn's examples/data/mnist_test_sample.npz"
                          + ("" if dtype == np.uint8 else ", pixels scaled to [0, 1]")
                          + ("; labels are MNIST digits" if labels is not None else "; no labels"))
            else:
                return None, None, "the shipped MNIST sample is not available (installed package)"
        else:
            return None, None, f"no inputs given for a {'x'.join(map(str, model.input.shape))} input"
    n = min(len(images), max_samples)
    if max_bytes is not None:
        n = min(n, max(int(max_bytes), 0) // samples_bytes(model, 1))
        if n == 0:
            return None, None, "no embedded sample fits the board's flash"
    images = np.asarray(images)[:n].astype(dtype)
    labels = None if labels is None else np.asarray(labels)[:n].astype(np.int64)
    return images, labels, source


def samples_bytes(model, n):
    """Flash of n embedded inputs and their int16 labels."""
    return int(n) * (model.input.length * np.dtype(model.input.dtype).itemsize + 2)


HEADER = """// {name}.ino - generated by keras-ebnn: {what}
// Output over Serial (115200 baud): one line per input,
//   "image <i>: class <c>{label_part} time_us <t>"{tail}
// Model: {name}_predict() from <{name}.h>; input {shape} {in_type} ({name}_INPUT_LEN values, NHWC).
{protocol}#include <{name}.h>
#include <string.h>
#if defined(__AVR__)
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#endif
"""

EMBEDDED = """
// {n} inputs: {source}. In flash (PROGMEM on AVR); one input buffer in SRAM.
#if defined(__AVR__)
#define SAMPLE_FLASH PROGMEM
#define COPY_SAMPLE(dst, src, n) memcpy_P(dst, src, n)
#define READ_LABEL(p) ((int16_t)pgm_read_word(p))
#else
#define SAMPLE_FLASH
#define COPY_SAMPLE(dst, src, n) memcpy(dst, src, n)
#define READ_LABEL(p) (*(p))
#endif
#define N_SAMPLES {n}
static const {in_type} samples[N_SAMPLES][{name}_INPUT_LEN] SAMPLE_FLASH = {{
{rows}
}};
static const int16_t labels[N_SAMPLES] SAMPLE_FLASH = {{{labels}}};  // -1: no label
static {in_type} input[{name}_INPUT_LEN];

void setup() {{
  Serial.begin(115200);
  int correct = 0, labelled = 0;
  for (int i = 0; i < N_SAMPLES; i++) {{
    float scores[{name}_NUM_CLASSES];
    COPY_SAMPLE(input, samples[i], sizeof(input));
    unsigned long start = micros();
    int cls = {name}_predict(input, scores);
    unsigned long us = micros() - start;
    int label = READ_LABEL(&labels[i]);
    Serial.print(F("image "));
    Serial.print(i);
    Serial.print(F(": class "));
    Serial.print(cls);
    if (label >= 0) {{
      Serial.print(F(" label "));
      Serial.print(label);
      labelled++;
      correct += (cls == label);
    }}
    Serial.print(F(" time_us "));
    Serial.println(us);
  }}
  if (labelled > 0) {{
    Serial.print(F("accuracy "));
    Serial.print(correct);
    Serial.print('/');
    Serial.println(labelled);
  }}
  Serial.println(F("done"));
  Serial.flush();
#if defined(__AVR__)
  cli();
  sleep_cpu();  // ends a simulator run; on a board the sketch simply stops here
#endif
}}

void loop() {{}}
"""

SERIAL = """
// No embedded inputs ({reason}): inputs are read over Serial.
static {in_type} input[{name}_INPUT_LEN];
static unsigned long count = 0;

void setup() {{
  Serial.begin(115200);
}}

void loop() {{
  Serial.print(F("ready "));
  Serial.print((unsigned long){name}_INPUT_LEN);
  Serial.println(F(" {wire}"));
  uint8_t *dst = (uint8_t *)input;
  size_t got = 0;
  while (got < sizeof(input)) {{
    int c = Serial.read();
    if (c >= 0)
      dst[got++] = (uint8_t)c;
  }}
  float scores[{name}_NUM_CLASSES];
  unsigned long start = micros();
  int cls = {name}_predict(input, scores);
  unsigned long us = micros() - start;
  Serial.print(F("image "));
  Serial.print(count++);
  Serial.print(F(": class "));
  Serial.print(cls);
  Serial.print(F(" time_us "));
  Serial.println(us);
}}
"""


def _values(img, in_type, per_line):
    """One input as C initialiser lines of per_line values."""
    vals = [f"{float(v):.9g}f" for v in img] if in_type == "float" else [str(int(v)) for v in img]
    return ",\n   ".join(", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line))


def sketch(model, name, images=None, labels=None, source=None, reason=None):
    """Text of the example sketch: embedded `images` (with `labels`, or None) from `source`, or,
    when images is None, the Serial-input sketch (`reason` says why)."""
    in_type = "uint8_t" if model.input.dtype == np.uint8 else "float"
    shape = "x".join(map(str, model.input.shape))
    if images is not None:
        n = len(images)
        flat = np.asarray(images).reshape(n, -1)
        labs = [-1] * n if labels is None else [int(v) for v in labels]
        head = HEADER.format(name=name, what=f"classifies {n} embedded inputs",
                             label_part=" [label <l>]" if labels is not None else "",
                             tail=("\n// then \"accuracy <correct>/<labelled>\"" if labels is not None else "")
                             + ' and "done".', shape=shape, in_type=in_type, protocol="")
        per_line = int(np.prod(model.input.shape[1:]))  # one image row (W x C values) per line
        if not 8 <= per_line <= 32:
            per_line = 32 if in_type == "uint8_t" else 8
        rows = ",\n".join("  {" + _values(img, in_type, per_line) + "}" for img in flat)
        return head + EMBEDDED.format(name=name, n=n, source=source, in_type=in_type, rows=rows,
                                      labels=", ".join(map(str, labs)))
    protocol = "".join(f"// {line}\n" for line in SERIAL_PROTOCOL.splitlines())
    head = HEADER.format(name=name, what="classifies inputs it reads over Serial", label_part="",
                         tail=".", shape=shape, in_type=in_type, protocol=protocol)
    return head + SERIAL.format(name=name, in_type=in_type, reason=reason or "none given",
                                wire="uint8" if in_type == "uint8_t" else "float32")


def export_arduino(model, out_dir, name, sample_images=None, sample_labels=None, samples=None):
    """Write the Arduino library for `model` into out_dir; returns the memory plan.

    samples: (images, labels, source) from `choose_samples` (export() passes what fits the board);
    when None they are chosen here from sample_images/sample_labels (the verification inputs) or the
    shipped MNIST sample. Without any, the example sketch reads its inputs over Serial.

    Raises keras_ebnn.frontdoor.exporting.BudgetError, with the byte counts, when the model's constant data
    cannot be read on AVR boards (over the 64 KB that pgm_read_* reaches, or an array over 32,767 B;
    see exporters.c.avr_reach_problems); nothing is written then."""
    import json
    problems = avr_reach_problems(model, name)
    if problems:
        from keras_ebnn.errors import BudgetError
        raise BudgetError("; ".join(problems) + ". The Arduino export targets AVR boards too: export a smaller "
                          "model, or use --target c and add the files to a sketch for an Arm board")
    out_dir = Path(out_dir)
    plan = export_c(model, out_dir / "src", name)
    if samples is None:
        samples = choose_samples(model, sample_images, sample_labels)
    images, labels, source = samples
    text = (sketch(model, name, images, labels, source) if images is not None
            else sketch(model, name, reason=source))
    (out_dir / "library.properties").write_text(PROPERTIES.format(name=name, version=VERSION))
    (out_dir / "library.json").write_text(json.dumps(library_json(name), indent=2) + "\n")
    sketch_dir = out_dir / "examples" / name
    sketch_dir.mkdir(parents=True, exist_ok=True)
    (sketch_dir / f"{name}.ino").write_text(text)
    return plan
