"""Write spoken_digits_clips.h for the Zephyr sample: the int16 samples of a few 8 kHz mono 16-bit WAV
files as C arrays (the label is the file name's leading digit when it has one, as FSDD's
{digit}_{speaker}_{index}.wav do; else -1).

    python examples/spoken_digits/zephyr/make_clips.py OUT/spoken_digits_clips.h a.wav b.wav ...
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # run from a source checkout without installing keras_ebnn
    sys.path.insert(0, str(ROOT))

MAX_SAMPLES = 1 << 16  # per clip: FSDD's longest clip has ~18k samples


def read_clip(path, sample_rate=8000):
    """(name, int16 samples, label) of a mono 16-bit WAV file at sample_rate Hz."""
    from keras_ebnn.train.datasets import read_wav_int16
    path = Path(path)
    samples, _ = read_wav_int16(str(path), path.name, sample_rate)
    if not 0 < len(samples) <= MAX_SAMPLES:
        raise ValueError(f"{path.name}: {len(samples)} samples; 1 to {MAX_SAMPLES} are supported")
    head = path.stem.split("_")[0]
    return path.name, samples, int(head) if head.isdigit() and len(head) == 1 else -1


def header_text(clips):
    """spoken_digits_clips.h for clips [(name, int16 samples, label)]."""
    if not clips:
        raise ValueError("no clips")
    lines = ["/* spoken_digits_clips.h - written by examples/spoken_digits/zephyr/make_clips.py. Do not edit. */",
             "#ifndef SPOKEN_DIGITS_CLIPS_H", "#define SPOKEN_DIGITS_CLIPS_H", "", "#include <stdint.h>", "",
             "typedef struct {", "    const char *name;", "    const int16_t *samples;", "    uint32_t n;",
             "    int label; /* -1: unknown */", "} spoken_digits_clip_t;", ""]
    for i, (name, samples, _) in enumerate(clips):
        s = np.asarray(samples, np.int16)
        lines.append(f"static const int16_t spoken_digits_clip_{i}[{len(s)}] = {{")
        lines += ["    " + ", ".join(str(int(v)) for v in s[k:k + 16]) + "," for k in range(0, len(s), 16)]
        lines += ["};", ""]
    lines.append("static const spoken_digits_clip_t spoken_digits_clips[] = {")
    for i, (name, samples, label) in enumerate(clips):
        safe = "".join(c if c.isalnum() or c in "._- " else "_" for c in name)
        lines.append(f'    {{"{safe}", spoken_digits_clip_{i}, {len(samples)}u, {int(label)}}},')
    lines += ["};", "#define SPOKEN_DIGITS_NUM_CLIPS (sizeof(spoken_digits_clips) / sizeof(spoken_digits_clips[0]))",
              "", "#endif /* SPOKEN_DIGITS_CLIPS_H */", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the header to write (named spoken_digits_clips.h)")
    ap.add_argument("wav", nargs="+", help="8 kHz mono 16-bit PCM WAV files")
    args = ap.parse_args(argv)
    try:
        clips = [read_clip(p) for p in args.wav]
    except (OSError, ValueError) as exc:
        sys.exit(f"make_clips.py: {exc}")
    Path(args.out).write_text(header_text(clips))
    print(f"{args.out}: {len(clips)} clips, {sum(len(c[1]) for c in clips)} samples")


if __name__ == "__main__":
    main()
