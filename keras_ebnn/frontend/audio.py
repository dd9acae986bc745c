"""An integer audio front end: raw 16-bit samples in, uint8 log-mel feature frames out.

One `FrontEnd` object configures both sides: `FrontEnd.features(clip)` (NumPy, for training and as
the reference) and the C that a device runs (runtime_c/ebnn_audio.c, configured by the tables that
`FrontEnd.c_source` writes; `keras_ebnn.export(..., audio_frontend=fe)` ships it beside the model).
The two are equal bit for bit: every step is integer arithmetic with the same operations in the same
order (tests/test_audio.py compares them on generated clips and, when present, on FSDD).

Per frame (`frame_length` samples, one every `frame_step` samples):
  1. window: p[i] = x[i] * window[i] (int32; `window` a Q15 periodic Hann table);
  2. block floating point: r = max(0, bitlen(max |p|) - 14), v[i] = p[i] >> r (|v| < 2^14), zero
     padding to `fft_size`;
  3. real FFT of fft_size points as a complex FFT of M = fft_size/2 points on (v[2n], v[2n+1]):
     radix-2 decimation in time, Q15 twiddles, each butterfly's outputs halved (>> 1) so nothing
     overflows int32; then the split into bins X[k], k = 0..M (twiddle products >> 15);
  4. power P[k] = Xr^2 + Xi^2 (uint32);
  5. mel filterbank: bin k adds P[k] * (32768 - w[k]) to band band[k] and P[k] * w[k] to band
     band[k] + 1 (triangles with Q15 weights; uint64 sums; bands 1..mel_bands are kept);
  6. log: L = 64 * (floor(log2 E) + 2 r) + LOG2_TABLE[next 6 bits of E] (log2 in 1/64 octave; 0 for
     E = 0);
  7. feature = clamp((L - log_offset) >> log_shift, 0, 255) (uint8; L <= log_offset gives 0).
Right shifts of negative values are arithmetic (floor), as NumPy's and as every C compiler keras-ebnn
targets (C99 leaves it implementation-defined; ebnn_audio.c checks it at compile time).

Streaming (the C API and `FrontEnd.stream_features`): samples go into a ring of frame_length samples;
the first frame is computed once frame_length samples have arrived, then one every frame_step
samples. The model's input is a window of the last `num_frames` frames, oldest first; frames not yet
computed are 0. A clip is classified as: reset, push the clip, push zeros up to `window_samples`
(frame_length + (num_frames - 1) * frame_step) when it is shorter, take the window.
"""
from dataclasses import dataclass

import numpy as np

LOG_FRAC_BITS = 6
# log2(1 + (j + 0.5) / 64) in 1/64 units, j = the 6 bits after the leading one
LOG2_TABLE = np.array([int(np.floor(64 * np.log2(1 + (j + 0.5) / 64) + 0.5)) for j in range(64)], np.int64)
BLOCK_BITS = 14  # windowed samples are shifted to below 2^14: no int32 overflow in the FFT


def _mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_inv(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@dataclass
class FrontEnd:
    """Configuration of the integer front end (see the module docstring). `num_frames` frames of
    `mel_bands` uint8 features are the model's input, shape (num_frames, mel_bands)."""
    sample_rate: int = 8000
    frame_length: int = 256
    frame_step: int = 128
    fft_size: int = 256
    mel_bands: int = 20
    num_frames: int = 61
    fmin: float = 20.0
    fmax: float = None  # default: sample_rate / 2
    log_offset: int = 0  # in 1/64 octave
    log_shift: int = 3

    def __post_init__(self):
        if self.fmax is None:
            self.fmax = self.sample_rate / 2
        n = self.fft_size
        if n < 16 or n > 4096 or n & (n - 1):
            raise ValueError(f"fft_size must be a power of two in 16..4096, got {n}")
        if not 1 <= self.frame_length <= n:
            raise ValueError(f"frame_length must be in 1..fft_size ({n}), got {self.frame_length}")
        if not 1 <= self.frame_step <= 65535:
            raise ValueError(f"frame_step must be in 1..65535, got {self.frame_step}")
        if not 1 <= self.mel_bands <= 254:
            raise ValueError(f"mel_bands must be in 1..254, got {self.mel_bands}")
        if not 1 <= self.num_frames <= 65535:
            raise ValueError(f"num_frames must be in 1..65535, got {self.num_frames}")
        if not 0 <= self.log_shift <= 16:
            raise ValueError(f"log_shift must be in 0..16, got {self.log_shift}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got {self.fmin}, {self.fmax}")
        self.log_offset = int(self.log_offset)
        self._tables()

    # ---- tables (computed once in float64 here, then only their integers are used, by both sides)
    def _tables(self):
        n, L = self.fft_size, self.frame_length
        i = np.arange(L)
        self.window = np.floor(32767 * (0.5 - 0.5 * np.cos(2 * np.pi * i / L)) + 0.5).astype(np.int64)
        k = np.arange(n // 2)
        self.cos_q15 = np.floor(32767 * np.cos(2 * np.pi * k / n) + 0.5).astype(np.int64)
        self.sin_q15 = np.floor(32767 * np.sin(2 * np.pi * k / n) + 0.5).astype(np.int64)
        bins = n // 2 + 1
        edges = _mel_inv(np.linspace(_mel(self.fmin), _mel(self.fmax), self.mel_bands + 2)) * n / self.sample_rate
        band = np.full(bins, 255, np.int64)
        weight = np.zeros(bins, np.int64)
        for b in range(bins):
            j = np.searchsorted(edges, b, side="right") - 1  # edges[j] <= b < edges[j + 1]
            if 0 <= j <= self.mel_bands:
                band[b] = j
                weight[b] = int(np.floor(32768 * (b - edges[j]) / (edges[j + 1] - edges[j]) + 0.5))
        self.mel_band, self.mel_weight = band, np.minimum(weight, 32768)
        empty = [j for j in range(1, self.mel_bands + 1)
                 if not (np.any((band == j - 1) & (self.mel_weight > 0)) or np.any((band == j) & (self.mel_weight < 32768)))]
        if empty:
            raise ValueError(f"mel bands {empty} get no FFT bin: use fewer mel_bands or a larger fft_size")
        self.mel_weight = np.where(band == 255, 0, self.mel_weight)

    @property
    def num_bins(self):
        return self.fft_size // 2 + 1

    @property
    def window_samples(self):
        """Samples one window of num_frames frames spans."""
        return self.frame_length + (self.num_frames - 1) * self.frame_step

    @property
    def feature_shape(self):
        return (self.num_frames, self.mel_bands)

    def config(self):
        """The plain parameters (JSON-friendly)."""
        return {k: getattr(self, k) for k in ("sample_rate", "frame_length", "frame_step", "fft_size", "mel_bands",
                                              "num_frames", "fmin", "fmax", "log_offset", "log_shift")}

    # ---- the reference computation
    def log_energies(self, frames):
        """L (1/64 octave, int64) of the mel bands of `frames` ((n, frame_length) int16-range ints):
        steps 1-6 of the module docstring. Returns (n, mel_bands)."""
        x = np.asarray(frames, np.int64).reshape(-1, self.frame_length)
        if x.size and (x.min() < -32768 or x.max() > 32767):
            raise ValueError("samples must be int16")
        p = x * self.window
        m = np.max(np.abs(p), axis=1, initial=0)
        r = np.maximum(0, _bit_length(m) - BLOCK_BITS)
        v = np.zeros((x.shape[0], self.fft_size), np.int64)
        v[:, :self.frame_length] = p >> r[:, None]
        zr, zi = self._fft(v[:, 0::2], v[:, 1::2])
        power = self._power(zr, zi)
        E = self._mel_energies(power)
        return _log2_q6(E) + (2 * r[:, None] << LOG_FRAC_BITS) * (E > 0)

    def _fft(self, re, im):
        M = self.fft_size // 2
        bits = M.bit_length() - 1
        rev = np.array([int(format(j, f"0{bits}b")[::-1], 2) if bits else 0 for j in range(M)])
        zr, zi = re[:, rev].copy(), im[:, rev].copy()
        half = 1
        while half < M:
            span = 2 * half
            k = np.arange(half)
            c = self.cos_q15[k * (self.fft_size // span)]
            s = self.sin_q15[k * (self.fft_size // span)]
            top = (np.arange(0, M, span)[:, None] + k[None, :]).ravel()
            bot = top + half
            c, s = np.tile(c, M // span), np.tile(s, M // span)
            ar, ai, br, bi = zr[:, top], zi[:, top], zr[:, bot], zi[:, bot]
            tr = (br * c + bi * s) >> 15
            ti = (bi * c - br * s) >> 15
            zr[:, top], zi[:, top] = (ar + tr) >> 1, (ai + ti) >> 1
            zr[:, bot], zi[:, bot] = (ar - tr) >> 1, (ai - ti) >> 1
            half = span
        return zr, zi

    def _power(self, zr, zi):
        M = self.fft_size // 2
        k = np.arange(1, M)
        ar, ai = zr[:, k], zi[:, k]
        br, bi = zr[:, M - k], -zi[:, M - k]
        er, ei = (ar + br) >> 1, (ai + bi) >> 1
        o_r, o_i = (ar - br) >> 1, (ai - bi) >> 1
        c, s = self.cos_q15[k], self.sin_q15[k]
        xr = er + ((c * o_i - s * o_r) >> 15)
        xi = ei - ((c * o_r + s * o_i) >> 15)
        power = np.empty((zr.shape[0], M + 1), np.int64)
        power[:, 0] = (zr[:, 0] + zi[:, 0]) ** 2
        power[:, M] = (zr[:, 0] - zi[:, 0]) ** 2
        power[:, 1:M] = xr * xr + xi * xi
        assert power.size == 0 or power.max() < 2 ** 32
        return power

    def _mel_energies(self, power):
        n = power.shape[0]
        acc = np.zeros((n, self.mel_bands + 2), np.int64)
        ok = self.mel_band < 255
        band, w = self.mel_band[ok], self.mel_weight[ok]
        p = power[:, ok]
        # per bin, in bin order (exact integers: the order of the sums does not matter)
        np.add.at(acc.T, band, (p * (32768 - w)).T)
        np.add.at(acc.T, band + 1, (p * w).T)
        return acc[:, 1:self.mel_bands + 1]

    def quantize(self, L):
        """Step 7: uint8 features from log energies."""
        d = np.asarray(L, np.int64) - self.log_offset
        return np.clip(np.where(d > 0, d, 0) >> self.log_shift, 0, 255).astype(np.uint8)

    def frame_matrix(self, samples):
        """The frames the stream computes on `samples` (n, frame_length): frame j ends at sample
        frame_length + j * frame_step."""
        x = np.asarray(samples, np.int64).ravel()
        if len(x) < self.frame_length:
            return np.zeros((0, self.frame_length), np.int64)
        n = (len(x) - self.frame_length) // self.frame_step + 1
        idx = np.arange(n)[:, None] * self.frame_step + np.arange(self.frame_length)[None, :]
        return x[idx]

    def stream_features(self, samples):
        """uint8 features (n, mel_bands) of every frame a stream of `samples` produces."""
        return self.quantize(self.log_energies(self.frame_matrix(samples)))

    def pad_clip(self, clip):
        """The samples pushed for a clip: the clip, then zeros up to window_samples."""
        x = np.asarray(clip)
        if x.ndim != 1:
            raise ValueError(f"a clip is 1-D (samples), got shape {x.shape}")
        return np.concatenate([x.astype(np.int64), np.zeros(max(0, self.window_samples - len(x)), np.int64)])

    def window_of(self, frames):
        """The model's input from a stream's frames: the last num_frames, zeros before when fewer."""
        out = np.zeros((self.num_frames, self.mel_bands), np.uint8)
        tail = frames[-self.num_frames:]
        if len(tail):
            out[self.num_frames - len(tail):] = tail
        return out

    def features(self, clip):
        """The model's input (num_frames, mel_bands) uint8 for one clip (int16 samples)."""
        return self.window_of(self.stream_features(self.pad_clip(clip)))

    def features_batch(self, clips, log=False):
        """features() of each clip, stacked: (n, num_frames, mel_bands) uint8; log=True: the log
        energies L (int64) instead of the uint8 features (for `fit_range`). All frames of all clips
        are computed in one vectorised pass."""
        if len(clips) > 256:  # bounded memory: the vectorised pass holds ~10 int64 copies of its frames
            return np.concatenate([self.features_batch(clips[i:i + 256], log) for i in range(0, len(clips), 256)])
        mats, counts = [], []
        for c in clips:
            m = self.frame_matrix(self.pad_clip(c))[-self.num_frames:]
            mats.append(m)
            counts.append(len(m))
        allf = np.concatenate(mats) if mats else np.zeros((0, self.frame_length), np.int64)
        L = self.log_energies(allf)
        vals = L if log else self.quantize(L)
        out = np.zeros((len(clips), self.num_frames, self.mel_bands), np.int64 if log else np.uint8)
        pos = 0
        for i, n in enumerate(counts):
            out[i, self.num_frames - n:] = vals[pos:pos + n]
            pos += n
        return out

    def fit_range(self, clips, low=1.0, high=99.9):
        """Set log_offset and log_shift from training clips: the `low` percentile of the non-silent
        log energies maps to 0, and the smallest shift that keeps the `high` percentile within 255.
        Returns self."""
        L = self.features_batch(clips, log=True).ravel()
        L = L[L > 0]
        if not len(L):
            raise ValueError("fit_range: the clips have no non-silent frame")
        lo, hi = np.percentile(L, [low, high])
        self.log_offset = int(np.floor(lo))
        span = max(1, int(np.ceil(hi - self.log_offset)))
        self.log_shift = next(s for s in range(17) if (span >> s) <= 255)
        return self

    # ---- C
    def c_tables(self, prefix):
        """C definitions of the tables and the ebnn_audio_config_t `prefix`_config (static const)."""
        def arr(ctype, name, vals, per_line=16):
            vals = [str(int(v)) for v in vals]
            lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
            return f"static const {ctype} {name}[{len(vals)}] EBNN_CONST = {{\n    " + ",\n    ".join(lines) + "\n};"
        band = self.mel_band
        return "\n".join([
            arr("int16_t", f"{prefix}_hann", self.window),
            arr("int16_t", f"{prefix}_cos", self.cos_q15),
            arr("int16_t", f"{prefix}_sin", self.sin_q15),
            arr("uint8_t", f"{prefix}_mel_band", band),
            arr("uint16_t", f"{prefix}_mel_weight", self.mel_weight),
            f"static const ebnn_audio_config_t {prefix}_config = {{",
            f"    {self.frame_length}u, {self.frame_step}u, {self.fft_size}u, {self.mel_bands}u, {self.num_frames}u,",
            f"    {self.log_offset}, {self.log_shift}u,",
            f"    {prefix}_hann, {prefix}_cos, {prefix}_sin, {prefix}_mel_band, {prefix}_mel_weight",
            "};"])

    def ram_bytes(self):
        """Bytes of the streaming state's buffers: sample ring (int16), FFT work (int32), the doubled
        feature window (uint8)."""
        return 2 * self.frame_length + 4 * self.fft_size + 2 * self.num_frames * self.mel_bands


def _bit_length(v):
    """Bit length of non-negative int64 values (0 for 0), exactly."""
    v = np.asarray(v, np.int64)
    out = np.zeros(v.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = (v >> s) > 0
        out += np.where(big, s, 0)
        v = np.where(big, v >> s, v)
    return out + (v > 0)


def _log2_q6(E):
    """64 * floor(log2 E) + LOG2_TABLE[the 6 bits after E's leading one]; 0 for E = 0."""
    E = np.asarray(E, np.int64)
    b = _bit_length(E) - 1
    sh = b - LOG_FRAC_BITS
    j = np.where(sh >= 0, E >> np.maximum(sh, 0), E << np.maximum(-sh, 0)) & 63
    return np.where(E > 0, (b << LOG_FRAC_BITS) + LOG2_TABLE[j], 0)


# ---- C files: NAME_audio.h / NAME_audio.c beside an export (or on their own, for tests)
RUNTIME_HEADERS = ("ebnn.h", "ebnn_internal.h", "ebnn_audio.h")
RUNTIME_SOURCE = "ebnn_audio.c"  # shipped as ebnn_audio.inc, included by NAME_audio.c (static to it)


def c_files(fe, name, classify=True):
    """{file name: text} of the front end's generated C: NAME_audio.h (the API) and NAME_audio.c
    (tables, the streaming state and buffers, static; the runtime's ebnn_audio.c included as
    ebnn_audio.inc, so it is private to NAME_audio.c). classify=True: NAME_audio_classify and
    NAME_audio_classify_clip call NAME_predict of the model NAME (NAME.h); the model's input must be
    uint8 (num_frames, mel_bands)."""
    from ..exporters.c import check_name
    check_name(name)
    up = name.upper()
    T, B = fe.num_frames, fe.mel_bands
    api_classify = f"""
/* NAME_predict (see {name}.h) on the current window: the class, or a negative status; scores (may be
 * NULL) receives {name}_NUM_CLASSES logits. */
int {name}_audio_classify(float *scores);

/* One clip: reset, push its n samples, then zeros up to {name}_AUDIO_WINDOW_SAMPLES when it is
 * shorter (the padding keras_ebnn.frontend.audio.FrontEnd.features applies in training), classify. */
int {name}_audio_classify_clip(const int16_t *clip, uint32_t n, float *scores);
""" if classify else ""
    header = f"""/* {name}_audio.h - the audio front end of model {name}, generated by keras-ebnn
 * (keras_ebnn.frontend.audio.FrontEnd). Do not edit. Raw 16-bit samples at {fe.sample_rate} Hz in, uint8 log-mel
 * features out: one frame of {B} features every {fe.frame_step} samples ({fe.frame_length}-sample
 * frames, {fe.fft_size}-point FFT); the model's input is the window of the last {T} frames.
 * Static state, not reentrant. RAM: {fe.ram_bytes()} B of buffers (+ the model's arena). */
#ifndef {up}_AUDIO_H
#define {up}_AUDIO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {name}_AUDIO_SAMPLE_RATE {fe.sample_rate}u
#define {name}_AUDIO_FRAME_LENGTH {fe.frame_length}u
#define {name}_AUDIO_FRAME_STEP {fe.frame_step}u
#define {name}_AUDIO_NUM_FRAMES {T}u
#define {name}_AUDIO_MEL_BANDS {B}u
#define {name}_AUDIO_WINDOW_SAMPLES {fe.window_samples}u /* samples one window spans */

/* Forget all samples: the window is all zeros (silence) again. Call once before the first push. */
void {name}_audio_reset(void);

/* Append n samples; returns how many new frames were computed (the window moved by that many). */
uint32_t {name}_audio_push(const int16_t *samples, uint32_t n);

/* The last {name}_AUDIO_NUM_FRAMES frames, oldest first ({name}_AUDIO_NUM_FRAMES x
 * {name}_AUDIO_MEL_BANDS bytes, frame-major): the model's input; valid until the next push. */
const uint8_t *{name}_audio_window(void);

/* Frames computed since the last reset. */
uint32_t {name}_audio_frames(void);
{api_classify}
#ifdef __cplusplus
}}
#endif

#endif /* {up}_AUDIO_H */
"""
    prefix = f"{name}_audio"
    src = [f"/* {name}_audio.c - generated by keras-ebnn (keras_ebnn.frontend.audio.FrontEnd {fe.config()}).",
           " * Do not edit. See {0}_audio.h and ebnn_audio.h. */".format(name),
           "#include <stddef.h>",
           "#define EBNN_PRIVATE 1 /* the front end's runtime code is static to this file */",
           '#include "ebnn.h"', '#include "ebnn_audio.h"', '#include "ebnn_audio.inc"',
           f'#include "{name}_audio.h"']
    if classify:
        src.append(f'#include "{name}.h"')
        src.append(f"typedef char {prefix}_input_is_the_window[sizeof({name}_input_t) == 1 && "
                   f"{name}_INPUT_LEN == {T * B}u ? 1 : -1]; /* uint8 ({T}, {B}) */")
    src += ["", fe.c_tables(prefix), "",
            f"static int16_t {prefix}_ring[{fe.frame_length}];",
            f"static int32_t {prefix}_work[{fe.fft_size}];",
            f"static uint8_t {prefix}_features[{2 * T * B}];",
            f"static ebnn_audio_t {prefix}_state;",
            f"static int {prefix}_ready;", "",
            f"void {name}_audio_reset(void)", "{",
            f"    (void)ebnn_audio_init(&{prefix}_state, &{prefix}_config, {prefix}_ring, {prefix}_work, "
            f"{prefix}_features);",
            f"    {prefix}_ready = 1;", "}", "",
            f"uint32_t {name}_audio_push(const int16_t *samples, uint32_t n)", "{",
            f"    if (!{prefix}_ready) {{", f"        {name}_audio_reset();", "    }",
            f"    return samples == NULL ? 0u : ebnn_audio_push(&{prefix}_state, samples, n);", "}", "",
            f"const uint8_t *{name}_audio_window(void)", "{",
            f"    if (!{prefix}_ready) {{", f"        {name}_audio_reset();", "    }",
            f"    return ebnn_audio_window(&{prefix}_state);", "}", "",
            f"uint32_t {name}_audio_frames(void)", "{",
            f"    return {prefix}_ready ? {prefix}_state.frames : 0u;", "}"]
    if classify:
        src += ["", f"int {name}_audio_classify(float *scores)", "{",
                f"    return {name}_predict({name}_audio_window(), scores);", "}", "",
                f"int {name}_audio_classify_clip(const int16_t *clip, uint32_t n, float *scores)", "{",
                "    static const int16_t zeros[32] = {0};",
                "    uint32_t total = n;",
                f"    {name}_audio_reset();",
                f"    (void){name}_audio_push(clip, n);",
                f"    while (total < {name}_AUDIO_WINDOW_SAMPLES) {{",
                f"        uint32_t k = {name}_AUDIO_WINDOW_SAMPLES - total;",
                "        k = k < 32u ? k : 32u;",
                f"        (void){name}_audio_push(zeros, k);",
                "        total += k;", "    }",
                f"    return {name}_audio_classify(scores);", "}"]
    return {f"{name}_audio.h": header, f"{name}_audio.c": "\n".join(src) + "\n"}


def write_c(fe, out_dir, name, classify=True):
    """Write NAME_audio.h / .c and the runtime files they need (ebnn.h, ebnn_internal.h,
    ebnn_audio.h, ebnn_audio.inc) into out_dir (the folder of NAME.c). Returns the paths written."""
    import shutil
    from pathlib import Path
    from ..exporters.c import runtime_dir
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in c_files(fe, name, classify).items():
        (out_dir / fname).write_text(text)
        written.append(out_dir / fname)
    for f in RUNTIME_HEADERS + (RUNTIME_SOURCE,):
        dst = out_dir / (f[:-2] + ".inc" if f == RUNTIME_SOURCE else f)
        shutil.copyfile(runtime_dir() / f, dst)
        written.append(dst)
    return written


# ---- host runs (tests, export verification)
_FRONTEND_RUNNER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "@NAME@_audio.h"
/* in: per clip uint32 n, uint32 chunk, n int16 samples; out: per clip uint32 frames, every frame's
 * features (pushed chunk samples at a time), then the final window */
int main(int argc, char **argv)
{
    FILE *in, *out;
    uint32_t head[2];
    static int16_t buf[1u << 20];
    if (argc != 3 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb"))) {
        return 2;
    }
    while (fread(head, sizeof(uint32_t), 2, in) == 2) {
        uint32_t n = head[0], chunk = head[1], pos = 0, frames = 0;
        static uint8_t all[1u << 22];
        if (n > sizeof(buf) / sizeof(buf[0]) || fread(buf, sizeof(int16_t), n, in) != n || chunk == 0) {
            return 3;
        }
        @NAME@_audio_reset();
        while (pos < n) {
            uint32_t k = n - pos < chunk ? n - pos : chunk, made, i;
            const uint8_t *w;
            made = @NAME@_audio_push(buf + pos, k);
            w = @NAME@_audio_window();
            if (made > @NAME@_AUDIO_NUM_FRAMES) {
                return 4; /* frames lost from the window: the test pushes smaller chunks */
            }
            for (i = 0; i < made; i++) {
                const uint8_t *f = w + (@NAME@_AUDIO_NUM_FRAMES - made + i) * @NAME@_AUDIO_MEL_BANDS;
                if ((frames + 1u) * @NAME@_AUDIO_MEL_BANDS > sizeof(all)) {
                    return 5;
                }
                memcpy(all + frames * @NAME@_AUDIO_MEL_BANDS, f, @NAME@_AUDIO_MEL_BANDS);
                frames++;
            }
            pos += k;
        }
        if (frames != @NAME@_audio_frames()) {
            return 6;
        }
        fwrite(&frames, sizeof(frames), 1, out);
        fwrite(all, 1, (size_t)frames * @NAME@_AUDIO_MEL_BANDS, out);
        fwrite(@NAME@_audio_window(), 1, (size_t)@NAME@_AUDIO_NUM_FRAMES * @NAME@_AUDIO_MEL_BANDS, out);
    }
    fclose(out);
    fclose(in);
    return 0;
}
"""

_CLASSIFY_RUNNER = r"""
#include <stdio.h>
#include "@NAME@.h"
#include "@NAME@_audio.h"
/* in: per clip uint32 n, n int16 samples; out: per clip int32 class, NUM_CLASSES float logits */
int main(int argc, char **argv)
{
    FILE *in, *out;
    uint32_t n;
    static int16_t buf[1u << 20];
    float scores[@NAME@_NUM_CLASSES];
    if (argc != 3 || !(in = fopen(argv[1], "rb")) || !(out = fopen(argv[2], "wb"))) {
        return 2;
    }
    while (fread(&n, sizeof(n), 1, in) == 1) {
        int32_t cls;
        if (n > sizeof(buf) / sizeof(buf[0]) || fread(buf, sizeof(int16_t), n, in) != n) {
            return 3;
        }
        cls = @NAME@_audio_classify_clip(buf, n, scores);
        fwrite(&cls, sizeof(cls), 1, out);
        fwrite(scores, sizeof(float), @NAME@_NUM_CLASSES, out);
    }
    fclose(out);
    fclose(in);
    return 0;
}
"""


def _build(c_dir, main_text, exe, sanitize, opt):
    import subprocess
    from pathlib import Path
    from ..frontdoor.host import SANITIZE, STRICT, c_sources, find_cc
    cc = find_cc()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    main = Path(exe).with_suffix(".main.c")
    main.write_text(main_text)
    cmd = [cc, *STRICT, opt, *(SANITIZE if sanitize else []), f"-I{c_dir}", *c_sources(c_dir), str(main),
           "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"C build failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return exe


def _run(exe, payload):
    import subprocess
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(prefix="ebnn-audio-run-") as tmp:
        fin, fout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        fin.write_bytes(payload)
        proc = subprocess.run([str(exe), str(fin), str(fout)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return fout.read_bytes()


def _clip_bytes(clip):
    x = np.asarray(clip)
    if x.ndim != 1 or (x.size and (x.min() < -32768 or x.max() > 32767)):
        raise ValueError("a clip is a 1-D array of int16 samples")
    return x.astype("<i2").tobytes()


def c_stream_features(fe, clips, chunks=None, sanitize=False, opt="-O2", name="fe"):
    """Run the generated C front end (host compiler) on each clip as a stream pushed `chunks[i]`
    samples at a time (default frame_step): returns [(frames (n, mel_bands) uint8, window (num_frames,
    mel_bands) uint8)] per clip. Compare with FrontEnd.stream_features / window_of."""
    import shutil
    import tempfile
    from pathlib import Path
    work = Path(tempfile.mkdtemp(prefix="ebnn-audio-"))
    try:
        write_c(fe, work / "c", name, classify=False)
        exe = _build(work / "c", _FRONTEND_RUNNER.replace("@NAME@", name), work / "runner", sanitize, opt)
        chunks = [fe.frame_step] * len(clips) if chunks is None else chunks
        payload = b"".join(np.array([len(c), k], "<u4").tobytes() + _clip_bytes(c) for c, k in zip(clips, chunks))
        raw = _run(exe, payload)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out, pos, B, T = [], 0, fe.mel_bands, fe.num_frames
    for _ in clips:
        n = int(np.frombuffer(raw, "<u4", 1, pos)[0])
        pos += 4
        frames = np.frombuffer(raw, np.uint8, n * B, pos).reshape(n, B)
        pos += n * B
        window = np.frombuffer(raw, np.uint8, T * B, pos).reshape(T, B)
        pos += T * B
        out.append((frames.copy(), window.copy()))
    if pos != len(raw):
        raise RuntimeError("front-end runner wrote trailing data")
    return out


def c_classify_clips(export_dir, name, clips, num_classes, sanitize=False, opt="-O2"):
    """Build an export holding NAME_audio.c (export(..., audio_frontend=...)) with the host compiler
    and classify raw clips through NAME_audio_classify_clip: (classes (N,), logits (N, K) float32)."""
    import shutil
    import tempfile
    from pathlib import Path
    work = Path(tempfile.mkdtemp(prefix="ebnn-audio-cls-"))
    try:
        exe = _build(export_dir, _CLASSIFY_RUNNER.replace("@NAME@", name), work / "runner", sanitize, opt)
        payload = b"".join(np.array([len(c)], "<u4").tobytes() + _clip_bytes(c) for c in clips)
        raw = _run(exe, payload)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rec = np.dtype([("cls", "<i4"), ("logits", "<f4", (num_classes,))])
    out = np.frombuffer(raw, rec)
    if len(out) != len(clips):
        raise RuntimeError(f"{len(out)} results for {len(clips)} clips")
    return out["cls"].astype(np.int64), out["logits"].copy()


ZEPHYR_SOURCES = "  zephyr_library_sources(src/{name}.c)\n"


def export_frontend(fe, lowered, out_dir, name, target):
    """Write the front end beside an export of `lowered` in out_dir (the export's folder: the C files
    go where NAME.c is: out_dir for "c", out_dir/src for "arduino" and "zephyr", whose CMakeLists.txt
    then also compiles NAME_audio.c). The model's input must be uint8 with num_frames x mel_bands
    values. Returns a sentence for the export's report."""
    from pathlib import Path
    if not isinstance(fe, FrontEnd):
        raise TypeError(f"audio_frontend must be a keras_ebnn.frontend.audio.FrontEnd, not {type(fe).__name__}")
    inp = lowered.input
    n = int(np.prod(inp.shape))
    if np.dtype(inp.dtype) != np.uint8 or n != fe.num_frames * fe.mel_bands:
        raise ValueError(f"audio_frontend: the model's input is {np.dtype(inp.dtype).name} "
                         f"{'x'.join(map(str, inp.shape))} ({n} values); the front end feeds uint8 "
                         f"{fe.num_frames} frames x {fe.mel_bands} mel bands ({fe.num_frames * fe.mel_bands} "
                         "values): a model whose first layer reads uint8 (Rescaling) of that shape is needed")
    out_dir = Path(out_dir)
    c_dir = out_dir if target == "c" else out_dir / "src"
    write_c(fe, c_dir, name, classify=True)
    if target == "zephyr":
        cmake = out_dir / "CMakeLists.txt"
        text = cmake.read_text()
        line = ZEPHYR_SOURCES.format(name=name)
        if line not in text:
            raise RuntimeError(f"{cmake}: no '{line.strip()}' line to add the front end after")
        cmake.write_text(text.replace(line, line + ZEPHYR_SOURCES.format(name=f"{name}_audio"), 1))
    flash = 2 * (fe.frame_length + fe.fft_size) + 3 * fe.num_bins
    return (f"audio front end: {name}_audio.c / {name}_audio.h ({fe.sample_rate} Hz, {fe.frame_length}-sample frames "
            f"every {fe.frame_step}, FFT {fe.fft_size}, {fe.mel_bands} mel bands, window of {fe.num_frames} "
            f"frames); {fe.ram_bytes():,} B of RAM buffers besides the model's, {flash:,} B of tables")
