/* Bare-metal driver for a TensorFlow Lite Micro model (glue.cpp): sets the interpreter up once, then
 * runs it over the images in images.h and prints, per image, "R <index> <class> <int8 outputs in
 * hex>..." through semihosting; then "A <arena bytes used>" and "S <stack bytes>". The marker
 * functions bracket each inference for the instruction-counting plugin (bench/targets/cortexm),
 * exactly as in the keras-ebnn driver; the stack is painted after the set-up, so "S" is what the
 * inferences use. PREDICT_EMPTY builds the calibration ELF (no TFLM call at all). */
#include <stdint.h>

#include "images.h" /* N_IMAGES, images[N_IMAGES][INPUT_LEN] (int8) */
#include "../cortexm/driver_io.h"

#ifndef NUM_OUTPUTS
#error "define NUM_OUTPUTS"
#endif

int tflm_setup(uint32_t *arena_used, uint32_t *input_len, uint32_t *output_len);
int tflm_invoke(const int8_t *input, int8_t *output);

static char line[32 + 3 * NUM_OUTPUTS];

static void put_line(char tag, uint32_t v)
{
    char *q = line;
    *q++ = tag;
    *q++ = ' ';
    q = put_dec(q, v);
    *q++ = '\n';
    *q = 0;
    sh_puts(line);
}

int main(void)
{
    static int8_t input[INPUT_LEN];
    static int8_t output[NUM_OUTPUTS];
    uint32_t i, k, sp, arena_used = 0, in_len = INPUT_LEN, out_len = NUM_OUTPUTS;
    uint32_t *p;
    int status = 0;
#ifndef PREDICT_EMPTY
    status = tflm_setup(&arena_used, &in_len, &out_len);
    if (status != 0 || in_len != INPUT_LEN || out_len != NUM_OUTPUTS) {
        sh_puts("FAILED set-up (status, or tensor sizes differ from images.h / NUM_OUTPUTS)\n");
        return 1;
    }
#else
    (void)status;
    (void)in_len;
    (void)out_len;
#endif
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = &_ebss; p < (uint32_t *)(sp - 64u); p++)
        *p = 0xA5A5A5A5u;
    for (i = 0; i < N_IMAGES; i++) {
        char *q = line;
        int best = 0;
        for (k = 0; k < INPUT_LEN; k++)
            input[k] = images[i][k];
#ifdef PREDICT_EMPTY
        ebnn_mark_start();
        output[0] = (int8_t)(input[0] & 0);
        ebnn_mark_stop();
        for (k = 1; k < NUM_OUTPUTS; k++)
            output[k] = 0;
#else
        ebnn_mark_start();
        status = tflm_invoke(input, output);
        ebnn_mark_stop();
        if (status != 0) {
            sh_puts("FAILED Invoke\n");
            return 1;
        }
#endif
        for (k = 1; k < NUM_OUTPUTS; k++)
            if (output[k] > output[best])
                best = (int)k;
        *q++ = 'R';
        *q++ = ' ';
        q = put_dec(q, i);
        *q++ = ' ';
        q = put_dec(q, (uint32_t)best);
        for (k = 0; k < NUM_OUTPUTS; k++) {
            *q++ = ' ';
            *q++ = "0123456789abcdef"[((uint8_t)output[k]) >> 4];
            *q++ = "0123456789abcdef"[((uint8_t)output[k]) & 15u];
        }
        *q++ = '\n';
        *q = 0;
        sh_puts(line);
    }
    for (p = &_ebss; p < (uint32_t *)sp && *p == 0xA5A5A5A5u; p++) {
    }
    put_line('A', arena_used);
    put_line('S', sp - (uint32_t)p);
    sh_puts("DONE\n");
    return 0;
}
