/* unit_main.c - runs a tests/c unit test (compiled with -Dmain=test_main) on a bare-metal Cortex-M under
 * QEMU: newlib's semihosting I/O (--specs=rdimon.specs) is set up first, so its printf reaches the host. */
extern void initialise_monitor_handles(void);
int test_main(void);

int main(void)
{
    initialise_monitor_handles();
    return test_main();
}
