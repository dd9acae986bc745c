/* driver_io.h - what every bare-metal bench driver shares (cortexm/driver.c, also built for RISC-V,
 * and tflm/driver.c): the output routine of the start-up code, the end of .bss where stack painting
 * starts, the marker functions the instruction-counting plugin (insn_count.c) is armed on, and
 * decimal printing. One copy, so every engine is counted between the very same markers. */
#ifndef EBNN_DRIVER_IO_H
#define EBNN_DRIVER_IO_H

#include <stdint.h>

void sh_puts(const char *s); /* startup.c: semihosting on Cortex-M, the UART on RISC-V */
extern uint32_t _ebss;

__attribute__((noinline)) void ebnn_mark_start(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void ebnn_mark_stop(void) { __asm__ volatile("" ::: "memory"); }

/* Writes v in decimal at p; returns the position after it. */
static char *put_dec(char *p, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* Writes v as 8 hex digits at p; returns the position after them. */
static inline char *put_hex(char *p, uint32_t v)
{
    int i;
    for (i = 7; i >= 0; i--)
        *p++ = "0123456789abcdef"[(v >> (4 * i)) & 15u];
    return p;
}

/* Prints "R <index> <class> <bits of each score in hex>...\n" through sh_puts; `line` has room for
 * 32 + 9 * n characters. */
#ifndef SCORE_T
#define SCORE_T float /* -DSCORE_T=int32_t for an integer-only export (quantize="int8"): int32 scores */
#endif

static inline void put_result(char *line, uint32_t index, int cls, const SCORE_T *scores, uint32_t n)
{
    char *p = line;
    uint32_t k;
    *p++ = 'R';
    *p++ = ' ';
    p = put_dec(p, index);
    *p++ = ' ';
    p = put_dec(p, (uint32_t)cls);
    for (k = 0; k < n; k++) {
        union { SCORE_T f; uint32_t u; } bits;
        bits.f = scores[k];
        *p++ = ' ';
        p = put_hex(p, bits.u);
    }
    *p++ = '\n';
    *p = 0;
    sh_puts(line);
}

#endif
