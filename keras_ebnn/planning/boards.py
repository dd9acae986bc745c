"""Board budgets: will an export fit a given board's flash and SRAM?

`BOARDS` is a small table of common boards (CPU, flash and SRAM a program may use). `budget()`
adds up what an export needs on a board from the memory plan (exporters/c.py `memory_plan`) and
what the target's program adds, and says what is counted and what is not:

  flash = model data (exact) + runtime code (estimate, scaled for the CPU: see CODE_SCALE)
          [+ Arduino: the core, Serial and the example sketch's code (measured, AVR only)
           + the sample inputs and labels embedded in the example sketch]
  RAM   = activation arena (exact) + stack of the predict call chain (estimate, the plan's
          `stack_bytes_estimate`) + the input buffer (one input, exact)
          [+ Arduino: the scores array and the core's and Serial's RAM with the sketch's own frame
           (measured, AVR only)]

The C and Zephyr targets count only what the model needs (your application's or the kernel's own
flash and RAM come on top: the budget says so). Figures that were not measured for a board's core are
listed as "not counted" rather than guessed.

`export(..., board="uno")` (and `keras-ebnn-convert --board uno`) refuses an export that does not
fit with `BudgetError`, giving these byte counts; `force=True` (`--force`) writes it anyway with a
warning that is also written into the report.
"""
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Board:
    name: str  # the --board value
    title: str
    mcu: str
    cpu: str  # core, as in gcc's -mcpu (or "avr", "xtensa-lx6")
    clock_mhz: int
    flash_bytes: int  # what a program may use (bootloader / partition excluded where stated)
    sram_bytes: int  # what a program may use (static data + heap + stack)
    source: str  # where the figures come from
    arduino_core: Optional[str] = None  # key of ARDUINO_CORE_OVERHEAD (None: not measured)

    @property
    def arch(self):
        """The memory plan's target (exporters/c.py memory_plan(target=...)), which sets the stack
        figure: the core's name for the cores the plan knows (ARMv6-M Cortex-M0 as the M0+), else
        None (the largest figure of all targets)."""
        if self.cpu in ("avr", "cortex-m0plus", "cortex-m3", "cortex-m4"):
            return self.cpu
        return "cortex-m0plus" if self.cpu == "cortex-m0" else None


_AVR_BOARDS_TXT = ("Arduino AVR core boards.txt (arduino-core-avr 1.8.7, "
                   "/usr/share/arduino/hardware/arduino/avr/boards.txt): upload.maximum_size / "
                   "upload.maximum_data_size")
_MBED_BOARDS_TXT = ("Arduino Mbed OS core boards.txt (github.com/arduino/ArduinoCore-mbed): "
                    "upload.maximum_size / upload.maximum_data_size")

BOARDS = {b.name: b for b in [
    # flash = 32 KB minus the 512 B Optiboot bootloader; the ATmega328P has 2 KB SRAM
    Board("uno", "Arduino Uno", "ATmega328P", "avr", 16, 32_256, 2_048, _AVR_BOARDS_TXT + " (uno)",
          arduino_core="avr"),
    # the Nano's bootloader takes 2 KB of the 32 KB
    Board("nano", "Arduino Nano", "ATmega328P", "avr", 16, 30_720, 2_048,
          _AVR_BOARDS_TXT + " (nano, cpu=atmega328)", arduino_core="avr"),
    # 256 KB flash minus the 8 KB bootloader, 8 KB SRAM
    Board("mega", "Arduino Mega 2560", "ATmega2560", "avr", 16, 253_952, 8_192,
          _AVR_BOARDS_TXT + " (mega, cpu=atmega2560)", arduino_core="avr"),
    # 32 KB flash minus the 4 KB USB bootloader, 2.5 KB SRAM (the USB stack also uses some of it:
    # the core overhead measured for the Uno does not include it)
    Board("leonardo", "Arduino Leonardo", "ATmega32U4", "avr", 16, 28_672, 2_560,
          _AVR_BOARDS_TXT + " (leonardo)"),
    Board("nano33ble", "Arduino Nano 33 BLE", "nRF52840", "cortex-m4", 64, 983_040, 262_144,
          _MBED_BOARDS_TXT + " (nano33ble)"),
    # RP2040: 264 KB SRAM; 2 MB QSPI flash on the Pico board
    Board("pico", "Raspberry Pi Pico", "RP2040", "cortex-m0plus", 133, 2_097_152, 270_336,
          _MBED_BOARDS_TXT + " (pico); RP2040 datasheet: 264 KB SRAM"),
    # default partition scheme (1.25 MB app of the 4 MB flash); 320 KB of the 520 KB SRAM is
    # available to the application as data RAM
    Board("esp32", "ESP32 DevKit (ESP32-WROOM-32)", "ESP32", "xtensa-lx6", 240, 1_310_720, 327_680,
          "Arduino-ESP32 core boards.txt (github.com/espressif/arduino-esp32), 'ESP32 Dev Module': "
          "upload.maximum_size / upload.maximum_data_size"),
    Board("bluepill", "STM32 Blue Pill", "STM32F103C8", "cortex-m3", 72, 65_536, 20_480,
          "ST STM32F103x8/xB datasheet (DS5319): 64 KB flash, 20 KB SRAM"),
    Board("nucleo_f401re", "ST Nucleo-F401RE", "STM32F401RE", "cortex-m4", 84, 524_288, 98_304,
          "ST STM32F401xD/xE datasheet (DS10086): 512 KB flash, 96 KB SRAM"),
    Board("nucleo_l031k6", "ST Nucleo-L031K6", "STM32L031K6", "cortex-m0plus", 32, 32_768, 8_192,
          "ST STM32L031x4/x6 datasheet (DS10668): 32 KB flash, 8 KB SRAM"),
    # the two QEMU machines the test suite runs Cortex-M code on
    Board("microbit", "BBC micro:bit v1 (QEMU 'microbit')", "nRF51822", "cortex-m0", 16, 262_144, 16_384,
          "Nordic nRF51822 product specification (QFAA variant): 256 KB flash, 16 KB RAM"),
    Board("qemu_cortex_m3", "TI LM3S6965 (QEMU 'lm3s6965evb', Zephyr qemu_cortex_m3)", "LM3S6965",
          "cortex-m3", 50, 262_144, 65_536, "TI Stellaris LM3S6965 datasheet: 256 KB flash, 64 KB SRAM"),
]}

# Runtime code relative to exporters/c.py CODE_BYTES (measured on Cortex-M3 -O2): the factor that
# bounds the code measured for every shipped model (bench/targets: code the model adds to a
# program, library routines included).
#   avr: avr-gcc 7.3 -Os (bench/targets/avr.py): uno_mnist 11,756 B vs 5,960 estimated, m15_mnist
#        11,798 vs 5,990, tiny_mnist 11,052 vs 5,720, paper_mnist 7,232 vs 3,990: at most 1.97x.
#   cortex-m0 / m0plus (Thumb-1 only): arm-none-eabi-gcc 13 -O2 (bench/targets/cortexm.py):
#        uno_mnist 6,492 B, m15_mnist 6,536, tiny_mnist 6,248, paper_mnist 4,356 (vs 5,960, 5,990,
#        5,720, 3,990 estimated): at most 1.09x.
#   other 32-bit cores: the Cortex-M3 figure (Cortex-M4 runs the same Thumb-2 code; for Xtensa it
#        was not measured).
CODE_SCALE = {"avr": 2.0, "cortex-m0": 1.15, "cortex-m0plus": 1.15}

# What an Arduino core adds, measured with arduino-builder 1.3.25 / arduino-core-avr 1.8.7 (Uno) and
# simavr on the example sketch generated for a stand-in model whose predict measures the stack
# (tests/test_boards.py rebuilds it and checks that these figures bound the measurement):
#   flash: core start-up, timer, HardwareSerial/Print code and the sketch's own code: 2,394 B
#          measured (the sketch minus its samples and the stand-in's predict), 2,500 allowed;
#   ram_static: HardwareSerial's object with its 64 + 64 B ring buffers, millis counters, ...: 188 B
#          measured (the sketch's .data + .bss minus its input buffer), 192 allowed;
#   ram_stack: what lies on the stack below the predict call chain, besides the scores array:
#          setup()'s frame at the call, 20 B measured, plus the deepest interrupt frame that can land
#          on the chain (Serial's transmit and timer 0 interrupts: 18 B measured; the receive
#          interrupt is not exercised by the measurement), 48 allowed. Serial.print's own chain
#          (~90 B) runs after predict returns, so it never adds to it.
ARDUINO_CORE_OVERHEAD = {"avr": {"flash": 2_500, "ram_static": 192, "ram_stack": 48}}


def board_names():
    return sorted(BOARDS)


def get(name):
    """The Board called `name` (case-insensitive); ValueError listing the known boards otherwise."""
    if isinstance(name, Board):
        return name
    key = str(name).strip().lower()
    if key not in BOARDS:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(board_names())}")
    return BOARDS[key]


def code_bytes(plan, board):
    """Runtime + predict code on the board's CPU: the plan's Cortex-M3 estimate x CODE_SCALE."""
    est = plan["totals"]["code_bytes_estimate"]
    return int(round(est * CODE_SCALE.get(board.cpu, 1.0)))


@dataclass
class Budget:
    """What an export needs on a board. items: (what, bytes); not_counted: texts."""
    board: Board
    target: str
    flash_items: list = field(default_factory=list)
    ram_items: list = field(default_factory=list)
    not_counted: list = field(default_factory=list)

    @property
    def flash_needed(self):
        return sum(b for _, b in self.flash_items)

    @property
    def ram_needed(self):
        return sum(b for _, b in self.ram_items)

    @property
    def fits(self):
        return self.flash_needed <= self.board.flash_bytes and self.ram_needed <= self.board.sram_bytes

    def _line(self, what, needed, available, items):
        verdict = (f"OVER by {needed - available:,} B" if needed > available
                   else f"{available - needed:,} B left")
        parts = " + ".join(f"{label} {b:,}" for label, b in items)
        return f"{what} {needed:,} B needed of {available:,} B ({verdict}) = {parts}"

    def lines(self):
        b = self.board
        out = [f"board {b.name} ({b.title}, {b.mcu}, {b.cpu} {b.clock_mhz} MHz), target {self.target}:",
               self._line("flash", self.flash_needed, b.flash_bytes, self.flash_items),
               self._line("RAM", self.ram_needed, b.sram_bytes, self.ram_items)]
        if self.not_counted:
            out.append("not counted: " + "; ".join(self.not_counted))
        return out

    def text(self):
        return "\n  ".join(self.lines())


def budget(plan, board, target, num_classes, sketch_flash=()):
    """Budget of an export with memory plan `plan` on `board` for `target` ("c", "arduino", "zephyr").

    num_classes: the model's outputs (the Arduino sketch's scores array). sketch_flash: extra
    (what, bytes) flash items of the Arduino example (embedded samples). See the module docstring
    for what is counted."""
    board = get(board)
    t = plan["totals"]
    scale = CODE_SCALE.get(board.cpu)
    code_label = "runtime code (estimate" + (f", Cortex-M3 figure x{scale}" if scale else "") + ")"
    bud = Budget(board=board, target=target,
                 flash_items=[("model data", t["flash_data_bytes"]), (code_label, code_bytes(plan, board))],
                 ram_items=[("activation arena", t["arena_bytes"]),
                            ("stack of the predict call chain (estimate)", t["stack_bytes_estimate"]),
                            ("input buffer", t["input_bytes"])])
    if target == "arduino":
        bud.ram_items.append(("scores array", 4 * int(num_classes)))
        core = ARDUINO_CORE_OVERHEAD.get(board.arduino_core) if board.arduino_core else None
        if core is not None:
            bud.flash_items.append(("Arduino core + Serial + sketch code (measured)", core["flash"]))
            bud.ram_items.append(("Arduino core + Serial buffers (measured)", core["ram_static"]))
            bud.ram_items.append(("sketch frame + interrupts (measured)", core["ram_stack"]))
        else:
            bud.not_counted.append(f"the Arduino core's own flash and RAM on {board.name} (not measured "
                                   "for this core)")
        bud.flash_items.extend(sketch_flash)
    elif target == "zephyr":
        bud.not_counted.append("the Zephyr kernel, drivers and your application's own flash and RAM")
    else:
        bud.not_counted.append("your application's own code, data and stack")
    return bud


def table_markdown():
    """The board table as Markdown (README.md shows it)."""
    rows = ["| `--board` | board | MCU | core | clock | flash for programs | SRAM |",
            "|---|---|---|---|---:|---:|---:|"]
    for name in board_names():
        b = BOARDS[name]
        rows.append(f"| `{b.name}` | {b.title} | {b.mcu} | {b.cpu} | {b.clock_mhz} MHz | "
                    f"{b.flash_bytes:,} B | {b.sram_bytes:,} B |")
    return "\n".join(rows)
