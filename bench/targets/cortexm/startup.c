/* Minimal Cortex-M startup for QEMU's mps2-an385/an386 boards: vector table, reset handler that
 * copies .data and zeroes .bss, and ARM semihosting (SYS_WRITE0, SYS_EXIT) for output and exit. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void Reset_Handler(void);
void Default_Handler(void);

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_puts(const char *s) { semihost(0x04, s); } /* SYS_WRITE0 */

void sh_exit(int code)
{
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026); the exit code is not passed on v1 */
    (void)code;
    semihost(0x18, (const void *)0x20026);
    for (;;) {
    }
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
#if defined(__ARM_FP)
    /* enable the FPU (CP10, CP11) on Cortex-M4F */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n isb");
#endif
    sh_exit(main());
}

void Default_Handler(void)
{
    sh_puts("unexpected exception\n");
    sh_exit(1);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    Default_Handler,
};
