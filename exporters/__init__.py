"""Back ends that write C, Zephyr and Arduino output (installed as keras_ebnn.exporters)."""
