/* runner.c - runs an ATmega328P firmware in simavr (cycle-accurate, 16 MHz) and measures cycles.
 *
 * The firmware talks through two general-purpose I/O registers, which no peripheral uses:
 *   GPIOR0 (data address 0x3E): 1 = start marker, 2 = stop marker (cycles counted in between);
 *   GPIOR1 (data address 0x4A): one output character per write (printed to stdout);
 *   GPIOR2 (data address 0x4B): each read returns the next byte of the input file (the test images,
 *     so that any number of them can be fed without storing them in the 32 KB of flash).
 * The run ends when the firmware sleeps with interrupts disabled. Prints
 * "cycles marked=M pairs=P total=T" at the end, then "P c1 c2 ..." (the cycles of each marked pair,
 * for the first MAX_PAIRS). Usage: runner FIRMWARE.elf INPUT.bin */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>

#include "sim_load.h"

#define MAX_PAIRS 100000
static avr_cycle_count_t started, marked, each[MAX_PAIRS];
static unsigned long pairs;
static int running;

static void on_marker(struct avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr;
    (void)param;
    if (v == 1) {
        started = avr->cycle;
        running = 1;
    } else if (v == 2 && running) {
        marked += avr->cycle - started;
        if (pairs < MAX_PAIRS)
            each[pairs] = avr->cycle - started;
        pairs++;
        running = 0;
    }
}

static FILE *input;

static uint8_t on_read(struct avr_t *avr, avr_io_addr_t addr, void *param)
{
    int c = fgetc(input);
    (void)avr;
    (void)addr;
    (void)param;
    return (uint8_t)(c == EOF ? 0 : c);
}

static void on_char(struct avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)avr;
    (void)addr;
    (void)param;
    putchar(v);
}

int main(int argc, char **argv)
{
    elf_firmware_t fw;
    avr_t *avr;
    int state = cpu_Running;
    if (argc != 3) {
        fprintf(stderr, "usage: %s FIRMWARE.elf INPUT.bin\n", argv[0]);
        return 2;
    }
    input = fopen(argv[2], "rb");
    if (input == NULL) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 2;
    }
    avr = load_atmega328p(argv[1], &fw);
    if (avr == NULL)
        return 2;
    avr_register_io_write(avr, 0x3E, on_marker, NULL);
    avr_register_io_write(avr, 0x4A, on_char, NULL);
    avr_register_io_read(avr, 0x4B, on_read, NULL);
    while (state != cpu_Done && state != cpu_Crashed)
        state = avr_run(avr);
    fflush(stdout);
    printf("cycles marked=%llu pairs=%lu total=%llu state=%d\n", (unsigned long long)marked, pairs,
           (unsigned long long)avr->cycle, state);
    printf("P");
    for (unsigned long i = 0; i < pairs && i < MAX_PAIRS; i++)
        printf(" %llu", (unsigned long long)each[i]);
    printf("\n");
    return state == cpu_Crashed;
}
