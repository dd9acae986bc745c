/* ebnn_audio.h - the keras-ebnn integer audio front end: 16-bit samples in, uint8 log-mel frames out.
 *
 * Exact integer C (no float, no malloc), equal bit for bit to keras_ebnn/frontend/audio.py FrontEnd (the NumPy
 * reference; the module docstring there gives the arithmetic step by step). A configuration
 * (ebnn_audio_config_t: sizes and constant tables) is written by FrontEnd.c_tables; an export with
 * audio_frontend= writes it into NAME_audio.c with a ready-made streaming state (see NAME_audio.h).
 *
 * Streaming: ebnn_audio_push() appends samples to a ring of frame_length samples; the first frame is
 * computed once frame_length samples have arrived, then one every frame_step samples. Each frame's
 * mel_bands features go into a doubled window buffer (every frame stored twice, num_frames apart), so
 * ebnn_audio_window() returns the last num_frames frames, oldest first, contiguous, without copying.
 */
#ifndef EBNN_AUDIO_H
#define EBNN_AUDIO_H

#include "ebnn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint16_t frame_length; /* samples per frame, <= fft_size */
    uint16_t frame_step;   /* samples between frames */
    uint16_t fft_size;     /* power of two, 16..4096 */
    uint16_t mel_bands;    /* features per frame, 1..254 */
    uint16_t num_frames;   /* frames in the model's window */
    int32_t log_offset;    /* feature = clamp((L - log_offset) >> log_shift, 0, 255), L in 1/64 octave */
    uint8_t log_shift;
    const int16_t *window;      /* frame_length Q15 window values (EBNN_CONST) */
    const int16_t *cos_q15;     /* fft_size / 2 values: cos(2 pi k / fft_size) in Q15 */
    const int16_t *sin_q15;     /* fft_size / 2 values: sin(2 pi k / fft_size) in Q15 */
    const uint8_t *mel_band;    /* fft_size / 2 + 1: bin k adds to bands mel_band[k] and +1 (255: none) */
    const uint16_t *mel_weight; /* fft_size / 2 + 1: Q15 weight of band mel_band[k] + 1 (32768 - w: the other) */
} ebnn_audio_config_t;

typedef struct {
    const ebnn_audio_config_t *cfg;
    int16_t *ring;     /* frame_length samples */
    int32_t *work;     /* fft_size values (fft_size / 2 complex) */
    uint8_t *features; /* 2 * num_frames * mel_bands bytes */
    uint16_t ring_pos; /* where the next sample goes (= the oldest sample) */
    uint16_t pending;  /* samples still needed for the next frame */
    uint16_t frame_pos; /* slot of the next frame (0..num_frames-1) = the window's oldest frame */
    uint32_t frames;   /* frames computed since the last reset */
} ebnn_audio_t;

/* The buffer sizes an ebnn_audio_t needs, in elements of their types. */
#define EBNN_AUDIO_RING(frame_length) (frame_length)
#define EBNN_AUDIO_WORK(fft_size) (fft_size)
#define EBNN_AUDIO_FEATURES(num_frames, mel_bands) (2u * (uint32_t)(num_frames) * (uint32_t)(mel_bands))

/* A generated NAME_audio.c defines EBNN_PRIVATE and includes ebnn_audio.inc: these functions are then
 * static to it (their definitions are their declarations). */
#ifndef EBNN_PRIVATE
/* One frame: the frame_length samples of `ring` from index `start` on (wrapping around), windowed,
 * transformed and reduced to cfg->mel_bands features written to `out`; `work` holds fft_size int32.
 * Returns EBNN_OK or EBNN_ERROR_ARGUMENT (NULL pointer, bad sizes). */
int ebnn_audio_frame(const ebnn_audio_config_t *cfg, const int16_t *ring, uint32_t start, int32_t *work,
                     uint8_t *out);

/* Attach the buffers and reset (EBNN_ERROR_ARGUMENT on a NULL pointer or a bad configuration). */
int ebnn_audio_init(ebnn_audio_t *st, const ebnn_audio_config_t *cfg, int16_t *ring, int32_t *work,
                    uint8_t *features);
/* Forget all samples and frames: the window is all zeros again. */
void ebnn_audio_reset(ebnn_audio_t *st);
/* Append n samples; returns the number of frames computed meanwhile. */
uint32_t ebnn_audio_push(ebnn_audio_t *st, const int16_t *samples, uint32_t n);
/* The last num_frames frames, oldest first: num_frames * mel_bands bytes, valid until the next push. */
const uint8_t *ebnn_audio_window(const ebnn_audio_t *st);
#endif /* EBNN_PRIVATE */

#ifdef __cplusplus
}
#endif

#endif /* EBNN_AUDIO_H */
