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

#endif
