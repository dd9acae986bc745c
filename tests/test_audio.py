"""The integer audio front end (keras_ebnn/frontend/audio.py, runtime_c/ebnn_audio.c): C == NumPy bit for bit
on generated clips (tones, chirps, noise, full-scale extremes, silence; several configurations; samples
pushed in chunks of every size), under ASan/UBSan; on FSDD's 300 test clips when the data is there."""
import numpy as np
import pytest

from keras_ebnn.frontend import audio
from keras_ebnn.frontdoor.host import find_cc

needs_cc = pytest.mark.skipif(find_cc() is None, reason="no C compiler")


def generated_clips(rate=8000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(rate) / rate
    clips = [
        (20000 * np.sin(2 * np.pi * 1000 * t)),                       # a tone
        (32767 * np.sin(2 * np.pi * (100 + 3900 * t / 2) * t)),       # full-scale chirp up to Nyquist
        rng.standard_normal(rate) * 3000,                              # noise
        rng.standard_normal(5000) * 40000,                             # clipped noise
        np.full(3000, -32768.0),                                       # the most negative sample, constant
        np.tile([32767.0, -32768.0], 2000),                            # full-scale Nyquist square wave
        np.zeros(2000),                                                # silence
        rng.standard_normal(200) * 10,                                 # shorter than one frame
        np.sin(2 * np.pi * 440 * np.arange(12345) / rate) * 3,         # quiet and longer than a window
        (rng.integers(-32768, 32768, 4000)),                           # uniform random samples
    ]
    return [np.clip(np.round(c), -32768, 32767).astype(np.int16) for c in clips]


CONFIGS = [
    dict(),  # the defaults: 256-sample frames, step 128, FFT 256, 20 mel bands, 61 frames
    dict(frame_length=200, frame_step=80, fft_size=256, mel_bands=32, num_frames=40, fmin=60.0, log_shift=2,
         log_offset=1500),
    dict(sample_rate=16000, frame_length=480, frame_step=320, fft_size=512, mel_bands=40, num_frames=49, fmax=7600.0),
    dict(frame_length=64, frame_step=100, fft_size=64, mel_bands=8, num_frames=5, log_shift=0, log_offset=3000),
]


@needs_cc
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_c_equals_numpy_on_generated_clips(config):
    fe = audio.FrontEnd(**CONFIGS[config])
    clips = generated_clips(fe.sample_rate, seed=config)
    if "log_offset" not in CONFIGS[config]:
        fe.fit_range(clips)
    chunks = [fe.frame_step, 1, 7, 1000, fe.frame_length, 3, 64, 4096, 129, 1][:len(clips)]
    chunks = [min(k, fe.num_frames * fe.frame_step) for k in chunks]  # a push makes <= num_frames frames
    got = audio.c_stream_features(fe, clips, chunks=chunks, sanitize=True, opt="-O1")
    for i, (clip, (frames, window)) in enumerate(zip(clips, got)):
        ref = fe.stream_features(clip)
        assert frames.shape == ref.shape, (i, frames.shape, ref.shape)
        assert np.array_equal(frames, ref), f"clip {i}: {int(np.sum(frames != ref))} features differ"
        assert np.array_equal(window, fe.window_of(ref)), f"clip {i}: window differs"
    # the clips exercise the features (not all 0 or 255) and the padded protocol equals the stream's
    feats = fe.features_batch(clips)
    assert 0 < feats.mean() < 255 and len(np.unique(feats)) > 20
    assert all(np.array_equal(fe.features(c), f) for c, f in zip(clips, feats))


def test_tone_lands_in_its_mel_band():
    fe = audio.FrontEnd()
    t = np.arange(8000) / 8000
    for freq in (300.0, 1000.0, 3000.0):
        L = fe.log_energies(fe.frame_matrix(np.round(10000 * np.sin(2 * np.pi * freq * t))))
        centre = audio._mel_inv(np.linspace(audio._mel(fe.fmin), audio._mel(fe.fmax), fe.mel_bands + 2))[1:-1]
        assert abs(int(np.argmax(L[10])) - int(np.argmin(np.abs(centre - freq)))) <= 1


def test_gain_moves_levels_by_octaves():
    """Block floating point: doubling the amplitude adds 2 octaves (128 in 1/64 octave) of power, up to rounding."""
    fe = audio.FrontEnd()
    x = generated_clips()[2].astype(np.int64) // 4
    a, b = fe.log_energies(fe.frame_matrix(x)), fe.log_energies(fe.frame_matrix(2 * x))
    assert np.median(b - a) == 128


def test_fit_range_and_errors():
    fe = audio.FrontEnd().fit_range(generated_clips()[:4])
    f = fe.features_batch(generated_clips()[:4])
    assert f.max() <= 255 and (f == 0).mean() < 0.5
    with pytest.raises(ValueError, match="power of two"):
        audio.FrontEnd(fft_size=200)
    with pytest.raises(ValueError, match="frame_length"):
        audio.FrontEnd(frame_length=300, fft_size=256)
    with pytest.raises(ValueError, match="no FFT bin"):
        audio.FrontEnd(fft_size=64, frame_length=64, mel_bands=60)
    with pytest.raises(ValueError, match="int16"):
        audio.FrontEnd().log_energies(np.full((1, 256), 40000))
    with pytest.raises(ValueError, match="1-D"):
        audio.FrontEnd().features(np.zeros((2, 100)))


@needs_cc
def test_c_rejects_bad_arguments(tmp_path):
    """ebnn_audio_frame / ebnn_audio_init as ordinary C files: EBNN_ERROR_ARGUMENT for NULL pointers
    and a bad configuration."""
    import subprocess
    from keras_ebnn.exporters.c import runtime_dir
    from keras_ebnn.frontdoor.host import SANITIZE, STRICT
    fe = audio.FrontEnd(fft_size=64, frame_length=64, frame_step=32, mel_bands=8, num_frames=4)
    (tmp_path / "main.c").write_text("""#include <stdio.h>
#include "ebnn_audio.h"
""" + fe.c_tables("t") + """
int main(void)
{
    int16_t ring[64] = {0}; int32_t work[64]; uint8_t feats[64], out[8];
    ebnn_audio_t st; ebnn_audio_config_t bad = t_config;
    int ok = 1;
    bad.fft_size = 48;
    ok &= ebnn_audio_init(&st, &bad, ring, work, feats) == EBNN_ERROR_ARGUMENT;
    ok &= ebnn_audio_init(&st, &t_config, NULL, work, feats) == EBNN_ERROR_ARGUMENT;
    ok &= ebnn_audio_frame(&t_config, ring, 64, work, out) == EBNN_ERROR_ARGUMENT;
    ok &= ebnn_audio_frame(NULL, ring, 0, work, out) == EBNN_ERROR_ARGUMENT;
    ok &= ebnn_audio_init(&st, &t_config, ring, work, feats) == EBNN_OK;
    ok &= ebnn_audio_frame(&t_config, ring, 3, work, out) == EBNN_OK && out[0] == 0;
    printf("%s\\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
""")
    exe = tmp_path / "t"
    src = runtime_dir()
    subprocess.run([find_cc(), *STRICT, *SANITIZE, f"-I{src}", str(src / "ebnn_audio.c"), str(tmp_path / "main.c"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "PASS"


@needs_cc
def test_c_equals_numpy_on_fsdd_test_split():
    """All 300 clips of FSDD's official test split (skips without the data)."""
    from keras_ebnn.train import datasets
    try:
        (_, _), (x, y) = datasets.load_fsdd()
    except datasets.DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    assert len(x) == 300
    fe = audio.FrontEnd().fit_range(x[:50])
    got = audio.c_stream_features(fe, [fe.pad_clip(c) for c in x], sanitize=False, opt="-O2")
    ref = fe.features_batch(x)
    for i, (frames, window) in enumerate(got):
        assert np.array_equal(window, ref[i]), f"test clip {i} differs"


def _write_wav(path, x, rate=8000, channels=1, width=2):
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(x, "<i2").tobytes() if width == 2 else bytes(len(x)))


def test_load_fsdd_on_generated_archive(tmp_path, monkeypatch):
    """A tar of generated WAV clips in FSDD's layout: the official split, labels, speakers, samples."""
    import tarfile
    from keras_ebnn.train import datasets
    rec = tmp_path / "src" / "recordings"
    rec.mkdir(parents=True)
    clips = {}
    for digit in (0, 7):
        for spk in ("jackson", "theo"):
            for idx in (0, 4, 5, 12):
                x = np.round(1000 * np.sin(np.arange(300 + 10 * idx) * (digit + 1) / 10)).astype(np.int16)
                clips[(digit, spk, idx)] = x
                _write_wav(rec / f"{digit}_{spk}_{idx}.wav", x)
    data = tmp_path / "data" / "fsdd"
    data.mkdir(parents=True)
    with tarfile.open(data / "fsdd-recordings.tar.gz", "w:gz") as tar:
        tar.add(rec, arcname="recordings")
    monkeypatch.setenv("EBNN_DATA_DIR", str(tmp_path / "data"))
    (xtr, ytr, str_), (xte, yte, ste) = datasets.load_fsdd(with_speakers=True)
    assert len(xtr) == 8 and len(xte) == 8
    assert sorted(set(ytr)) == [0, 7] and sorted(set(ste)) == ["jackson", "theo"]
    for x, y, s in zip(xte, yte, ste):
        assert any(np.array_equal(x, clips[(y, s, i)]) for i in (0, 4)) and x.dtype == np.int16
    x_test, y_test = datasets.load_fsdd(split="test")  # same from the archive
    assert all(np.array_equal(a, b) for a, b in zip(x_test, xte))
    x_dir, _ = datasets.load_fsdd(tmp_path / "src", split="train")  # a recordings/ folder works too
    assert all(np.array_equal(a, b) for a, b in zip(x_dir, xtr))
    _write_wav(rec / "3_theo_1.wav", np.zeros(100), rate=16000)
    with pytest.raises(ValueError, match="3_theo_1.wav: 16000 Hz"):
        datasets.load_fsdd(tmp_path / "src")
    monkeypatch.delenv("EBNN_DATA_DIR")
    with pytest.raises(datasets.DatasetNotFoundError, match="EBNN_DATA_DIR"):
        datasets.load_fsdd(tmp_path / "nowhere")


def _small_audio_model(fe, seed=0):
    """An untrained 1-D BNN on the front end's uint8 window, batch norm calibrated on `fe` features."""
    from keras_ebnn import import_larq
    from helpers.modelgen import calibrate_batchnorm
    tf, lq = import_larq()
    L = tf.keras.layers
    tf.keras.utils.set_random_seed(seed)
    binary = dict(kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False)
    model = tf.keras.Sequential([
        L.InputLayer(fe.feature_shape), L.Rescaling(1 / 255.0),
        lq.layers.QuantConv1D(16, 3, padding="same", **binary), L.BatchNormalization(),
        lq.layers.QuantConv1D(16, 3, padding="same", input_quantizer="ste_sign", **binary), L.MaxPooling1D(2),
        L.BatchNormalization(), L.Flatten(), lq.layers.QuantDense(4, input_quantizer="ste_sign", **binary),
        L.BatchNormalization(), L.Activation("softmax")])
    clips = generated_clips(fe.sample_rate, seed)
    fe.fit_range(clips)
    calibrate_batchnorm(model, fe.features_batch(clips), np.random.default_rng(seed))
    return model, clips


SMALL = dict(frame_length=128, frame_step=64, fft_size=128, mel_bands=12, num_frames=16)


@needs_cc
def test_export_with_front_end_classifies_raw_audio(tmp_path):
    """export(..., audio_frontend=fe): NAME_audio.c beside NAME.c; the C (front end + network, built
    with ASan/UBSan) classifies raw clips as the reference does on the NumPy features."""
    import keras_ebnn
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.ir.graph import lower_graph
    fe = audio.FrontEnd(**SMALL)
    model, clips = _small_audio_model(fe)
    rng = np.random.default_rng(1)
    clips = clips + [np.round(rng.standard_normal(int(rng.integers(50, 2000))) * rng.uniform(10, 20000))
                     .clip(-32768, 32767).astype(np.int16) for _ in range(30)]
    x = fe.features_batch(clips)
    res = keras_ebnn.export(model, tmp_path / "c", name="kws", verify_inputs=x, audio_frontend=fe)
    assert res.c_matches_reference and any("audio front end" in n for n in res.notes)
    for f in ("kws.c", "kws_audio.c", "kws_audio.h", "ebnn_audio.h", "ebnn_audio.inc"):
        assert (tmp_path / "c" / f).is_file(), f
    ref = graph_reference.run(lower_graph(model), x)
    assert len(np.unique(ref["classes"])) > 1  # the test can tell classes apart
    cls, logits = audio.c_classify_clips(tmp_path / "c", "kws", clips, 4, sanitize=True, opt="-O1")
    assert np.array_equal(cls, ref["classes"])
    assert np.array_equal(logits.view(np.uint32), np.asarray(ref["logits"], np.float32).view(np.uint32))


@pytest.mark.parametrize("target", ["zephyr", "arduino"])
def test_export_front_end_for_zephyr_and_arduino(tmp_path, target):
    """The front end goes into src/ with NAME.c; Zephyr's CMakeLists compiles it; every .c there
    compiles warning-free together (what Arduino's recursive src/ build does)."""
    import subprocess
    import keras_ebnn
    from keras_ebnn.frontdoor.host import STRICT
    fe = audio.FrontEnd(**SMALL)
    model, _ = _small_audio_model(fe)
    out = tmp_path / target
    keras_ebnn.export(model, out, name="kws", target=target, audio_frontend=fe)
    assert (out / "src" / "kws_audio.c").is_file() and (out / "src" / "ebnn_audio.inc").is_file()
    if target == "zephyr":
        assert "zephyr_library_sources(src/kws_audio.c)" in (out / "CMakeLists.txt").read_text()
    if find_cc() is not None:
        srcs = sorted(str(p) for p in (out / "src").glob("*.c"))
        subprocess.run([find_cc(), *STRICT, "-O2", "-c", f"-I{out / 'src'}", *srcs], check=True, cwd=tmp_path,
                       capture_output=True)


def test_export_front_end_refuses_a_model_of_another_input(tmp_path):
    import keras_ebnn
    fe = audio.FrontEnd(**SMALL)
    model, _ = _small_audio_model(fe)
    other = audio.FrontEnd(**dict(SMALL, mel_bands=10))
    with pytest.raises(ValueError, match="16 frames x 10 mel bands"):
        keras_ebnn.export(model, tmp_path / "c", name="kws", audio_frontend=other)
    assert not (tmp_path / "c").exists()


@needs_cc
def test_shipped_spoken_digits_model_on_fsdd(tmp_path):
    """examples/spoken_digits: the shipped model + front end on FSDD's 300 test clips: the C (front end
    + network on the raw clips) gives the reference's classes on every clip, accuracy >= 97% (skips
    without the data)."""
    import json
    from pathlib import Path
    import keras_ebnn
    from keras_ebnn.train import datasets
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.ir.graph import lower_graph
    from keras_ebnn.frontend.lowering import load_model
    try:
        clips, y = datasets.load_fsdd(split="test")
    except datasets.DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    folder = Path(__file__).resolve().parents[1] / "examples" / "spoken_digits"
    fe = audio.FrontEnd(**json.loads((folder / "frontend.json").read_text()))
    model = load_model(folder / "spoken_digits.keras")
    ref = graph_reference.run(lower_graph(model), fe.features_batch(clips))["classes"]
    keras_ebnn.export(model, tmp_path / "c", name="spoken_digits", audio_frontend=fe)
    cls, _ = audio.c_classify_clips(tmp_path / "c", "spoken_digits", clips, 10)
    assert np.array_equal(cls, ref)
    assert np.mean(cls == y) >= 0.97


def test_bench_driver_on_cortex_m4(tmp_path):
    """bench/spoken_digits.py's bare-metal driver (bench/targets/cortexm/audio_driver.c): the C front
    end + network on a Cortex-M4F under QEMU give the reference's classes and logits on raw clips, and
    the instruction counts of the front end and the network are positive."""
    import sys
    from helpers.common import ROOT
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from bench.targets import cortexm
    if not cortexm.available():
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not available")
    import keras_ebnn
    import spoken_digits as bench
    from keras_ebnn.ir import graph_reference
    from keras_ebnn.ir.graph import lower_graph
    fe = audio.FrontEnd(**SMALL)
    model, clips = _small_audio_model(fe)
    keras_ebnn.export(model, tmp_path / "c", name=bench.NAME, audio_frontend=fe)
    ref = graph_reference.run(lower_graph(model), fe.features_batch(clips))
    r = bench.run_target(tmp_path / "c", clips, "cortex-m4", tmp_path / "m4", num_classes=4)
    assert np.array_equal(r["classes"], ref["classes"])
    assert np.array_equal(r["logits"].view(np.uint32), np.asarray(ref["logits"], np.float32).view(np.uint32))
    assert r["front_end"] > 1000 and r["network"] > 100 and r["stack"] > 0
    assert any(k.endswith("_audio_ring") for k in r["buffers"])
