/* Bare-metal driver for a model exported with its audio front end (keras_ebnn.export(...,
 * audio_frontend=...)): per clip of clips.h, MODEL_audio_reset + MODEL_audio_push of the clip and of
 * zeros up to MODEL_AUDIO_WINDOW_SAMPLES (the front end), then MODEL_predict on MODEL_audio_window()
 * (the network); prints "R <index> <class> <logit bits>..." per clip and the stack high-water mark.
 * MEASURE selects what the markers bracket: 1 the front end, 2 the network, 0 nothing (calibration:
 * the markers alone), -1 nothing and no model call at all (the flash baseline). */
#include <stdint.h>

#include MODEL_HEADER
#include MODEL_AUDIO_HEADER
#include "clips.h"
#include "driver_io.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define NUM_CLASSES CAT(MODEL, _NUM_CLASSES)
#define WINDOW_SAMPLES CAT(MODEL, _AUDIO_WINDOW_SAMPLES)

#ifndef MEASURE
#define MEASURE 1
#endif

static char line[32 + 9 * NUM_CLASSES];
static const int16_t zeros[128];
volatile int16_t audio_sink;

static void front_end(const int16_t *x, uint32_t n)
{
#if MEASURE >= 0
    CAT(MODEL, _audio_reset)();
    (void)CAT(MODEL, _audio_push)(x, n);
    while (n < WINDOW_SAMPLES) {
        uint32_t k = WINDOW_SAMPLES - n < 128u ? WINDOW_SAMPLES - n : 128u;
        (void)CAT(MODEL, _audio_push)(zeros, k);
        n += k;
    }
#else
    audio_sink = x[n - 1u]; /* the clips stay in the baseline build (flash = what the model adds) */
    (void)zeros;
#endif
}

int main(void)
{
    float scores[NUM_CLASSES];
    uint32_t i, k;
    uint32_t *p, sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = &_ebss; p < (uint32_t *)(sp - 64u); p++)
        *p = 0xA5A5A5A5u;
    for (i = 0; i < N_CLIPS; i++) {
        int cls = 0;
        const int16_t *x = clip_samples + clip_offsets[i];
        uint32_t n = clip_offsets[i + 1] - clip_offsets[i];
        for (k = 0; k < NUM_CLASSES; k++)
            scores[k] = 0.0f;
#if MEASURE == 1
        ebnn_mark_start();
#endif
        front_end(x, n);
#if MEASURE == 1
        ebnn_mark_stop();
#elif MEASURE == 2
        ebnn_mark_start();
#endif
#if MEASURE >= 1
        cls = CAT(MODEL, _predict)(CAT(MODEL, _audio_window)(), scores);
#endif
#if MEASURE == 2
        ebnn_mark_stop();
#elif MEASURE == 0
        ebnn_mark_start();
        ebnn_mark_stop();
#endif
        put_result(line, i, cls, scores, NUM_CLASSES);
    }
    for (p = &_ebss; p < (uint32_t *)sp && *p == 0xA5A5A5A5u; p++) {
    }
    {
        char *q = line;
        *q++ = 'S';
        *q++ = ' ';
        q = put_dec(q, sp - (uint32_t)p);
        *q++ = '\n';
        *q = 0;
        sh_puts(line);
    }
    sh_puts("DONE\n");
    return 0;
}
