/* Bare-metal driver: runs MODEL_predict over the images in images.h and prints, per image,
 * "R <index> <class> <logit bits in hex>..." through sh_puts (semihosting on Cortex-M, the UART on
 * RISC-V: bench/targets/riscv/startup.c). ebnn_mark_start/stop bracket each
 * inference for the instruction-counting plugin. */
#include <stdint.h>

#include MODEL_HEADER
#include "images.h"
#include "driver_io.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PREDICT CAT(MODEL, _predict)
#define NUM_CLASSES CAT(MODEL, _NUM_CLASSES)
#define INPUT_LEN CAT(MODEL, _INPUT_LEN)
#ifndef SCORE_T
#define SCORE_T float /* -DSCORE_T=int32_t for an integer-only export (quantize="int8"): int32 scores */
#endif

static char line[32 + 9 * NUM_CLASSES];

int main(void)
{
    static CAT(MODEL, _input_t) input[INPUT_LEN];
    SCORE_T scores[NUM_CLASSES];
    uint32_t i, k;
    uint32_t *p, sp;
    /* paint the free RAM between the end of .bss and the stack, to measure the stack's high-water mark */
#if defined(__riscv)
    __asm__ volatile("mv %0, sp" : "=r"(sp));
#else
    __asm__ volatile("mov %0, sp" : "=r"(sp));
#endif
    for (p = &_ebss; p < (uint32_t *)(sp - 64u); p++)
        *p = 0xA5A5A5A5u;
    for (i = 0; i < N_IMAGES; i++) {
        int cls;
        for (k = 0; k < INPUT_LEN; k++)
            input[k] = (CAT(MODEL, _input_t))images[i][k];
#ifdef PREDICT_EMPTY /* calibration build: the cost of the markers alone */
        ebnn_mark_start();
        cls = (int)input[0] & 0; /* reads input, so the copy loop stays as in the real build */
        ebnn_mark_stop();
        for (k = 0; k < NUM_CLASSES; k++)
            scores[k] = 0;
#else
        ebnn_mark_start();
        cls = PREDICT(input, scores);
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
        q = put_dec(q, sp - (uint32_t)p); /* stack bytes used below main's frame */
        *q++ = '\n';
        *q = 0;
        sh_puts(line);
    }
    sh_puts("DONE\n");
    return 0;
}
