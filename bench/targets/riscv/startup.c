/* Minimal RV32 start-up for QEMU's `virt` machine (run with -bios none, so the ELF starts at its entry
 * point 0x80000000 in machine mode): sets gp, sp and the trap vector, copies .data, zeroes .bss, calls
 * main; output goes to the NS16550 UART at 0x10000000 and exit is through the SiFive test device at
 * 0x100000 (QEMU exits with status 0 on 0x5555, with the code in bits 16..31 on 0x3333). Any trap (an
 * illegal instruction, e.g. a Zbb instruction on a core without Zbb, or a misaligned access) prints
 * "unexpected exception" and exits with status 1 instead of hanging. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void ebnn_reset(void);
void ebnn_trap(void);

__asm__(".section .text.start,\"ax\",@progbits\n"
        ".global _start\n"
        "_start:\n"
        ".option push\n.option norelax\n"
        "  la gp, __global_pointer$\n"
        ".option pop\n"
        "  la sp, _estack\n"
        "  la t0, ebnn_trap_entry\n"
        ".option push\n.option arch, +zicsr\n"
        "  csrw mtvec, t0\n"
        ".option pop\n"
        "  call ebnn_reset\n"
        "1: j 1b\n"
        ".align 2\n"
        "ebnn_trap_entry:\n"
        "  call ebnn_trap\n"
        "2: j 2b\n"
        ".text\n");

#define UART_THR ((volatile uint8_t *)0x10000000u)
#define UART_LSR ((volatile uint8_t *)0x10000005u)
#define TEST_DEVICE ((volatile uint32_t *)0x00100000u)

void sh_puts(const char *s)
{
    while (*s) {
        while ((*UART_LSR & 0x20u) == 0u) { /* wait for an empty transmit holding register */
        }
        *UART_THR = (uint8_t)*s++;
    }
}

void sh_exit(int code)
{
    *TEST_DEVICE = code == 0 ? 0x5555u : (((uint32_t)code & 0xFFFFu) << 16) | 0x3333u;
    for (;;) {
    }
}

void ebnn_reset(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    sh_exit(main());
}

void ebnn_trap(void)
{
    sh_puts("unexpected exception\n");
    sh_exit(1);
}
