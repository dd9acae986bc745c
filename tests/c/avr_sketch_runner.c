/* avr_sketch_runner.c - runs an Arduino Uno sketch (ATmega328P, 16 MHz) in simavr, for
 * tests/test_boards.py: prints what the sketch writes to Serial, can type bytes into Serial, and
 * measures the peak SRAM the sketch used.
 *
 * Usage: avr_sketch_runner SKETCH.elf STATIC_END [INPUT.bin CHUNK]
 *   STATIC_END: the first SRAM address after .data and .bss (avr-nm's _end), hex or decimal.
 *   INPUT.bin:  bytes typed into UART0 as the sketch's Serial protocol asks: each line it prints
 *               starting with "ready" releases the next CHUNK bytes, sent as fast as the UART's
 *               receive FIFO takes them (XON/XOFF). The run ends once the sketch has answered
 *               the last chunk (printed as many lines starting with "image" as there are chunks).
 * SRAM above STATIC_END is painted before the first instruction; at the end, the lowest painted
 * byte that changed is the stack's (and heap's) high-water mark. The run ends when the sketch
 * sleeps with interrupts disabled, or after MAX_CYCLES, or after the last answer. Prints, after the sketch's own output:
 *   "sram static=S stack=K peak=P ramend=R cycles=C state=X"  (S + K = P bytes of the 2,048). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>
#include <simavr/sim_irq.h>

#include "sim_load.h" /* bench/targets/avr/ */

#define PAINT 0xA5u
#define MAX_CYCLES (16000000ull * 120u) /* 2 simulated minutes */

static avr_irq_t *uart_in;
static uint8_t *input;
static size_t input_len, input_pos, released, chunk;
static int xoff;
static int line_start = 1, image_line, ready_line;
static unsigned long answers, expected;

static void feed(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    (void)param;
    xoff = 0;
    while (!xoff && input_pos < released)
        avr_raise_irq(uart_in, input[input_pos++]);
}

static void stop_feeding(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    (void)param;
    xoff = 1;
}

static void on_output(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    int c = (int)(value & 0xFFu);
    putchar(c);
    if (line_start) {
        image_line = (c == 'i');
        ready_line = (c == 'r');
    }
    line_start = (c == '\n');
    if (line_start && image_line)
        answers++;
    if (line_start && ready_line && released < input_len) {
        released = released + chunk < input_len ? released + chunk : input_len;
        feed(irq, 0, NULL);
    }
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        return NULL;
    buf = malloc((size_t)n + 1u);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
        return NULL;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    elf_firmware_t fw;
    avr_t *avr;
    int state = cpu_Running;
    uint32_t flags = 0;
    unsigned long static_end, lowest;
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: %s SKETCH.elf STATIC_END [INPUT.bin CHUNK]\n", argv[0]);
        return 2;
    }
    static_end = strtoul(argv[2], NULL, 0);
    if (argc == 5) {
        if ((input = read_file(argv[3], &input_len)) == NULL) {
            fprintf(stderr, "cannot read %s\n", argv[3]);
            return 2;
        }
        chunk = strtoul(argv[4], NULL, 0);
        if (chunk == 0 || input_len % chunk != 0) {
            fprintf(stderr, "CHUNK must divide the input's %lu bytes\n", (unsigned long)input_len);
            return 2;
        }
        expected = input_len / chunk;
    }
    avr = load_atmega328p(argv[1], &fw);
    if (avr == NULL)
        return 2;
    if (static_end < 0x100u || static_end > avr->ramend) {
        fprintf(stderr, "STATIC_END 0x%lx outside SRAM\n", static_end);
        return 2;
    }
    memset(avr->data + static_end, PAINT, avr->ramend + 1u - static_end);

    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(uint32_t)AVR_UART_FLAG_STDIO; /* we print the output ourselves */
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), on_output, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), feed, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), stop_feeding, NULL);

    while (state != cpu_Done && state != cpu_Crashed && avr->cycle < MAX_CYCLES
           && !(expected > 0 && answers >= expected))
        state = avr_run(avr);
    fflush(stdout);
    lowest = static_end;
    while (lowest <= avr->ramend && avr->data[lowest] == PAINT)
        lowest++;
    printf("\nsram static=%lu stack=%lu peak=%lu ramend=%u cycles=%llu state=%d\n", static_end - 0x100u,
           (unsigned long)avr->ramend + 1u - lowest, (unsigned long)avr->ramend + 1u - 0x100u - (lowest - static_end),
           (unsigned)avr->ramend, (unsigned long long)avr->cycle, state);
    return state == cpu_Crashed;
}
