/* sim_load.h - the set-up shared by the simavr runners (bench/targets/avr/runner.c and
 * tests/c/avr_sketch_runner.c): read an ELF and load it into a new ATmega328P at 16 MHz.
 * Include after <stdio.h>, <string.h>, <simavr/sim_avr.h> and <simavr/sim_elf.h>. */
#ifndef EBNN_SIM_LOAD_H
#define EBNN_SIM_LOAD_H

/* The simulated MCU running the firmware at `path` (read into *fw), or NULL after a message. */
static avr_t *load_atmega328p(const char *path, elf_firmware_t *fw)
{
    avr_t *avr;
    memset(fw, 0, sizeof(*fw));
    if (elf_read_firmware(path, fw) != 0) {
        fprintf(stderr, "cannot read %s\n", path);
        return NULL;
    }
    avr = avr_make_mcu_by_name("atmega328p");
    if (avr == NULL)
        return NULL;
    avr_init(avr);
    avr->frequency = 16000000;
    avr->log = 0;
    avr_load_firmware(avr, fw);
    return avr;
}

#endif
