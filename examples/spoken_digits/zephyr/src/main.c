/* keras-ebnn spoken digits sample: classifies the clips of spoken_digits_clips.h (raw 16-bit samples
 * at 8 kHz, written from WAV files by make_clips.py) with the exported front end and network.
 * Each clip is fed twice: in 128-sample chunks as a microphone driver would deliver them
 * (spoken_digits_audio_push, then spoken_digits_audio_classify), and whole
 * (spoken_digits_audio_classify_clip); both must give the same digit. The logits are printed as
 * the hex bits of their float32 values, so a host can compare them exactly. */
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "spoken_digits.h"
#include "spoken_digits_audio.h"
#include "spoken_digits_clips.h"

#define CHUNK 128u

/* Reset, push the clip in CHUNK-sample pieces, then silence up to one window (the padding the
 * training features have), classify the window. */
static int classify_streamed(const int16_t *samples, uint32_t n, float *scores)
{
    static const int16_t silence[CHUNK];
    uint32_t pushed = 0;

    spoken_digits_audio_reset();
    while (pushed < n) {
        uint32_t k = n - pushed < CHUNK ? n - pushed : CHUNK;
        (void)spoken_digits_audio_push(samples + pushed, k);
        pushed += k;
    }
    while (pushed < spoken_digits_AUDIO_WINDOW_SAMPLES) {
        uint32_t k = spoken_digits_AUDIO_WINDOW_SAMPLES - pushed;
        k = k < CHUNK ? k : CHUNK;
        (void)spoken_digits_audio_push(silence, k);
        pushed += k;
    }
    return spoken_digits_audio_classify(scores);
}

int main(void)
{
    float scores[spoken_digits_NUM_CLASSES];
    float streamed[spoken_digits_NUM_CLASSES];
    int correct = 0, labelled = 0, agree = 0;

    printk("keras-ebnn spoken digits: %u clips at %u Hz, window of %u frames x %u mel bands\n",
           (unsigned)SPOKEN_DIGITS_NUM_CLIPS, spoken_digits_AUDIO_SAMPLE_RATE, spoken_digits_AUDIO_NUM_FRAMES,
           spoken_digits_AUDIO_MEL_BANDS);
    for (unsigned i = 0; i < SPOKEN_DIGITS_NUM_CLIPS; i++) {
        const spoken_digits_clip_t *clip = &spoken_digits_clips[i];
        int cls = spoken_digits_audio_classify_clip(clip->samples, clip->n, scores);
        int cls_streamed = classify_streamed(clip->samples, clip->n, streamed);

        agree += cls == cls_streamed && memcmp(scores, streamed, sizeof(scores)) == 0;
        printk("clip %u (%s, %u samples): digit %d streamed %d", i, clip->name, (unsigned)clip->n, cls,
               cls_streamed);
        if (clip->label >= 0) {
            printk(" label %d", clip->label);
            labelled++;
            correct += cls == clip->label;
        }
        printk(" logits");
        for (unsigned k = 0; k < spoken_digits_NUM_CLASSES; k++) {
            uint32_t bits;
            memcpy(&bits, &scores[k], sizeof(bits));
            printk(" %08x", bits);
        }
        printk("\n");
    }
    printk("streamed equals whole: %d/%u\n", agree, (unsigned)SPOKEN_DIGITS_NUM_CLIPS);
    printk("labelled clips right: %d/%d\n", correct, labelled);
    return 0;
}
