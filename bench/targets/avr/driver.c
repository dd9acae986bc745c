/* ATmega328P driver: reads a 16-bit image count, then each test image byte by byte from GPIOR2 into
 * the RAM input buffer (the runner feeds them, see runner.c), runs
 * MODEL_predict between two markers, and prints "R <index> <class> <logit bits>..." and, at the end,
 * the stack high-water mark "S <bytes>" through GPIOR1 (see runner.c). */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#include <stdint.h>

#include MODEL_HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PREDICT CAT(MODEL, _predict)
#define NUM_CLASSES CAT(MODEL, _NUM_CLASSES)
#define INPUT_LEN CAT(MODEL, _INPUT_LEN)

extern uint8_t __heap_start;

static void put_char(char c) { GPIOR1 = (uint8_t)c; }
/* strings and tables stay in flash: on a 2 KB part every byte of .data counts */
static void put_str_P(const char *s)
{
    char c;
    while ((c = (char)pgm_read_byte(s++)) != 0)
        put_char(c);
}
static void put_hex(uint32_t v)
{
    int8_t i;
    for (i = 7; i >= 0; i--) {
        uint8_t d = (uint8_t)((v >> (4 * i)) & 15u);
        put_char((char)(d < 10u ? (uint8_t)('0' + d) : (uint8_t)('a' + d - 10u)));
    }
}
static void put_dec(uint32_t v)
{
    char tmp[10];
    uint8_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0)
        put_char(tmp[--n]);
}

static CAT(MODEL, _input_t) input[INPUT_LEN];

int main(void)
{
    float scores[NUM_CLASSES];
    uint16_t i, k;
    uint8_t *p;
    /* paint the free RAM between the end of .bss and the stack, to measure the stack's high-water mark */
    for (p = &__heap_start; p < (uint8_t *)SP - 16; p++)
        *p = 0xA5;
    uint16_t n_images = GPIOR2;
    n_images |= (uint16_t)GPIOR2 << 8;
    for (i = 0; i < n_images; i++) {
        int cls;
        for (k = 0; k < INPUT_LEN; k++)
            input[k] = (CAT(MODEL, _input_t))GPIOR2;
#ifdef PREDICT_EMPTY /* calibration build: the cost of the markers alone */
        GPIOR0 = 1;
        cls = (int)input[0] & 0;
        GPIOR0 = 2;
        for (k = 0; k < NUM_CLASSES; k++)
            scores[k] = 0.0f;
#else
        GPIOR0 = 1;
        cls = PREDICT(input, scores);
        GPIOR0 = 2;
#endif
        put_str_P(PSTR("R "));
        put_dec(i);
        put_char(' ');
        put_dec((uint32_t)cls);
        for (k = 0; k < NUM_CLASSES; k++) {
            union { float f; uint32_t u; } bits;
            bits.f = scores[k];
            put_char(' ');
            put_hex(bits.u);
        }
        put_char('\n');
    }
    for (p = &__heap_start; *p == 0xA5 && p < (uint8_t *)RAMEND; p++) {
    }
    put_str_P(PSTR("S "));
    put_dec((uint32_t)((uint8_t *)RAMEND + 1 - p));
    put_str_P(PSTR("\nDONE\n"));
    cli();
    sleep_cpu();
    return 0;
}
