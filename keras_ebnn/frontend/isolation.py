"""Run what reads an untrusted model file in a child process with memory and time limits (issue 19).

HDF5, h5py and TensorFlow are C libraries: a damaged file can crash them (a segmentation fault kills
the process, no Python exception) or send them into an endless loop. keras-ebnn therefore reads,
checks and loads model files in a child process:

* the child limits itself first thing (`limit_self`): address space `MEMORY_LIMIT` (8 GiB), no core
  files, and an interval timer (`reading_timer`) around reading/checking and around Keras's
  loading (`LOAD_SECONDS` each, `KERAS_EBNN_LOAD_SECONDS` to change it); the timer's SIGALRM keeps
  its default action, so even a loop inside C code ends the child;
* the parent (`run_child`) forwards the child's output as it comes and turns a death by a signal
  into one sentence (`death_reason`);
* the child writes nothing outside the private folder it is given (TMPDIR points there), which the
  parent removes afterwards, whatever happened.
"""
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

CHILD_ENV = "_KERAS_EBNN_CHILD"  # set in a child that already runs isolated
PHASE_ENV = "_KERAS_EBNN_PHASE_FILE"  # where a child notes what it is doing (for death_reason)
MEMORY_LIMIT = 8 * 1024 ** 3
LOAD_SECONDS = 30.0


def in_child():
    return os.environ.get(CHILD_ENV) == "1"


def load_seconds():
    try:
        value = float(os.environ.get("KERAS_EBNN_LOAD_SECONDS", LOAD_SECONDS))
    except ValueError:
        value = LOAD_SECONDS
    return value if value > 0 else LOAD_SECONDS


def limit_self(memory=MEMORY_LIMIT, cpu_seconds=None):
    """Limit this process: address space, no core dumps, optionally CPU seconds (SIGXCPU kills)."""
    for what, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_CPU, cpu_seconds)):
        if value is None:
            continue
        soft, hard = resource.getrlimit(what)
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        try:
            resource.setrlimit(what, (value, hard))
        except (ValueError, OSError):  # pragma: no cover - a stricter limit is already in place
            pass


class reading_timer:
    """Context manager: SIGALRM (default action: end the process) if the block takes too long."""

    def __init__(self, seconds=None, phase="check"):
        self.seconds = load_seconds() if seconds is None else seconds
        self.phase, self.phase_file = phase, os.environ.get(PHASE_ENV)

    def __enter__(self):
        if self.phase_file:
            Path(self.phase_file).write_text(f"{self.phase}\n{self.seconds:g}\n")
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self.phase_file:
            try:
                Path(self.phase_file).unlink()
            except OSError:
                pass
        return False


def child_env(workdir, extra=None):
    """The environment of a child: marked isolated, TMPDIR in `workdir`, this keras_ebnn importable."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, **{CHILD_ENV: "1"}, TMPDIR=str(workdir),
               PYTHONPATH=package_root + (os.pathsep + path if path else ""))
    env.update(extra or {})
    return env


def run_child(cmd, env, stdout=None, stderr=None, timeout=None, stdin_text=None):
    """Run `cmd`, forwarding its stdout / stderr to the given text streams (default: sys's) while it
    runs. Returns the return code (negative: the signal that ended it). A `timeout` (seconds) ends it
    and its own children with SIGKILL."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)

    def pump(src, dst):
        import codecs
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            chunk = os.read(src.fileno(), 65536)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                dst.write(text)
                dst.flush()
            if not chunk:
                return

    threads = [threading.Thread(target=pump, args=(proc.stdout, stdout), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, stderr), daemon=True)]
    for t in threads:
        t.start()
    try:
        if stdin_text is not None:
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        proc.wait(timeout=timeout)
    except BaseException:  # timeout, Ctrl-C: end the child and everything it started
        _kill_group(proc)
        proc.wait()
        if not isinstance(sys.exc_info()[1], subprocess.TimeoutExpired):
            raise
        for t in threads:
            t.join(5)
        return -signal.SIGKILL
    for t in threads:
        t.join()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this child and its children
    except OSError:
        pass


def read_phase(phase_file):
    """(phase, seconds) a child noted in `phase_file` before it died, or (None, None)."""
    try:
        phase, seconds = Path(phase_file).read_text().split()[:2]
        return phase, seconds
    except (OSError, ValueError):
        return None, None


def death_reason(returncode, phase=None, seconds=None):
    """One sentence for a child ended by signal -returncode (None if it exited normally)."""
    if returncode is None or returncode >= 0:
        return None
    sig = -returncode
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    doing = {"check": "reading and checking the model file",
             "load": "loading the model with Keras"}.get(phase, "the conversion")
    if sig == signal.SIGALRM:
        limit = f" {seconds} s" if seconds else ""
        return (f"{doing} took longer than its time limit{limit} and was stopped (a damaged file can "
                "send the HDF5 library into an endless loop)")
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        return f"{doing} was stopped ({name}: time or memory limit reached)"
    return (f"{doing} crashed ({name}; limits: {MEMORY_LIMIT // 1024 ** 3} GiB of memory); the file is "
            "probably damaged (a C library such as HDF5 failed on it)")
