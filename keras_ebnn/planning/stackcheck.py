"""Worst-case stack of an exported model's predict functions, from the compiler's own figures.

    python -m keras_ebnn.planning.stackcheck OUT_DIR --target cortex-m3 [-O2] [-DEBNN_CHUNK=8 ...]

(targets: cortex-m0plus, cortex-m3, cortex-m4, avr; default optimisation -O2, -Os for avr.)

Compiles every .c file of an export folder (as the user builds it: whatever files it holds) for a
target with `-fstack-usage`, reads each function's frame from the `.su` files GCC writes (the bytes
its prologue reserves, incl. saved registers and, on AVR, the return address), takes the call graph
from the disassembly of the objects (`objdump -dr`: every call and tail jump with the relocation
naming its callee, so also the library calls GCC writes out from instruction patterns rather than as
calls, e.g. AVR's `__umulhisi3`, which GCC's own call graph (-fcallgraph-info) does not list), and
returns the deepest chain of frames from NAME_predict and NAME_predict_scratch.

Library routines the objects call (libgcc, libc: `__aeabi_idiv`, `memcpy`, `__umulhisi3`, ...) have no
`.su`: they are taken from a program linked from the objects and the toolchain's libraries and bounded
from their disassembly: every instruction reachable from the routine's entry is visited (branches,
jumps into shared tails, fall-through into the next label), and the bound is the return address the
call pushes + all its pushes and stack-pointer decrements + its deepest callee. That sum is an upper
bound when no push can repeat, which is checked (a push on a cycle of the routine's control flow is
refused).

It fails loudly (StackCheckError) rather than guess: a frame GCC marks `dynamic` (unbounded: alloca,
VLAs), recursion, an indirect call or jump (function pointers), a call it cannot resolve to a defined
function, a library routine that writes the stack pointer in a way it cannot bound.
Needs GCC's -fstack-usage (any GCC >= 4.6; the avr-gcc 5.4 of Debian has it, while -fcallgraph-info
needs GCC >= 10) and the target's objdump.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


class StackCheckError(RuntimeError):
    """The stack could not be bounded (the message says which function and why)."""


@dataclass(frozen=True)
class Target:
    """A compiler and its instruction set. `call_push`: bytes a call instruction pushes (the return
    address), counted for library routines (GCC's .su already counts it for compiled code)."""
    cc: str
    flags: tuple
    arch: str  # "arm" (Thumb) | "avr"
    objdump: str
    call_push: int
    default_opt: str


TARGETS = {
    "cortex-m0plus": Target("arm-none-eabi-gcc", ("-mcpu=cortex-m0plus", "-mthumb"), "arm", "arm-none-eabi-objdump", 0,
                            "-O2"),
    "cortex-m3": Target("arm-none-eabi-gcc", ("-mcpu=cortex-m3", "-mthumb"), "arm", "arm-none-eabi-objdump", 0, "-O2"),
    "cortex-m4": Target("arm-none-eabi-gcc", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
                        "arm", "arm-none-eabi-objdump", 0, "-O2"),
    # the Arduino core builds with -Os
    "avr": Target("avr-gcc", ("-mmcu=atmega328p",), "avr", "avr-objdump", 2, "-Os"),
}


def available(target):
    """True when the target's compiler and objdump are installed."""
    t = TARGETS[target]
    return shutil.which(t.cc) is not None and shutil.which(t.objdump) is not None


@dataclass
class Chain:
    """The deepest call chain from a root: total bytes and the (function, frame bytes) path."""
    bytes: int
    path: list = field(default_factory=list)

    def __str__(self):
        return f"{self.bytes} B: " + " -> ".join(f"{n} ({b})" for n, b in self.path)


def deepest_chain(frames, calls, root):
    """Deepest stack of `root`: frames {node: bytes}, calls {node: [callee nodes]}. Every reachable
    node must have a frame; recursion (a cycle reachable from root) raises StackCheckError."""
    best, active = {}, []

    def visit(node):
        if node in best:
            return best[node]
        if node in active:
            cycle = active[active.index(node):] + [node]
            raise StackCheckError("recursion: " + " -> ".join(cycle) + " (the stack cannot be bounded)")
        if node not in frames:
            caller = f" (called by {active[-1]})" if active else ""
            raise StackCheckError(f"no stack figure for {node}{caller}")
        active.append(node)
        sub = max((visit(c) for c in calls.get(node, ())), key=lambda ch: ch.bytes, default=Chain(0, []))
        active.pop()
        best[node] = Chain(frames[node] + sub.bytes, [(node, frames[node])] + sub.path)
        return best[node]

    return visit(root)


# ------------------------------------------------------------------------------------------------
# disassembly

_FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
_INSN = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
_RELOC = re.compile(r"^\s+([0-9a-f]+): (R_\w+)\s+(\S+)$")
_SYMREF = re.compile(r"^(.+?)([+-]0x[0-9a-f]+)?$")


@dataclass
class Insn:
    addr: int
    op: str
    args: str
    reloc: str = None  # symbol (or section+offset) of the relocation at this instruction


def disassemble(objdump, path):
    """{function: [Insn]} from `objdump -dr --no-show-raw-insn` (relocations attached to their instruction)."""
    out = subprocess.run([objdump, "-dr", "--no-show-raw-insn", str(path)], capture_output=True, text=True,
                         check=True).stdout
    funcs, cur, elided = {}, None, False
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            cur, elided = funcs.setdefault(m.group(2), []), False
            continue
        if cur is None:
            continue
        if line.strip() == "...":  # objdump elided zero words (a literal pool): their relocations are data
            elided = True
            continue
        m = _RELOC.match(line)
        if m and cur:
            if not elided:
                cur[-1].reloc = m.group(3)
            continue
        m = _INSN.match(line)
        if m:
            elided = False
            cur.append(Insn(int(m.group(1), 16), m.group(2), m.group(3).split(";")[0].split("@")[0].strip()))
    return funcs


def symbol_table(objdump, path, code_labels=False):
    """[(name, binding 'l'|'g'|'w', section, value, size)] of the function symbols of an object or ELF
    (code_labels: every symbol in a .text section, as assembly routines often lack the function type)."""
    out = subprocess.run([objdump, "-t", str(path)], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]+) (.{7}) (\S+)\s+([0-9a-f]+) (.+)$", line)
        if m and ("F" in m.group(2) or (code_labels and m.group(3).startswith(".text")
                                         and not set("dfO") & set(m.group(2)))):
            flags = m.group(2)
            binding = "g" if "g" in flags else "w" if "w" in flags else "l"
            syms.append((m.group(5).split()[-1], binding, m.group(3), int(m.group(1), 16), int(m.group(4), 16)))
    return syms


_ARM_COND = "(eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)"
CALLS = {"arm": {"bl"}, "avr": {"call", "rcall"}}
JUMPS = {"arm": {"b", "b.n", "b.w"}, "avr": {"jmp", "rjmp"}}
INDIRECT = {"arm": {"blx"}, "avr": {"icall", "eicall", "ijmp", "eijmp"}}


def _is_jump(arch, op):
    if op in JUMPS[arch]:
        return True
    return arch == "arm" and re.fullmatch(f"b{_ARM_COND}(\\.[nw])?", op) is not None


def _indirect(arch, insn):
    """True for a call or jump through a register (a function pointer)."""
    if insn.op in INDIRECT[arch]:
        return arch == "avr" or not re.match(r"^[0-9a-f]+\s", insn.args)  # arm blx <label> is direct
    return arch == "arm" and insn.op == "bx" and insn.args != "lr"


def _branch_target(insn):
    """Address of a direct branch's target as objdump prints it (`1c <name+0x1c>` or `.+4 ; 0x...`)."""
    m = re.match(r"^(?:0x)?([0-9a-f]+)\b", insn.args)
    if m:
        return int(m.group(1), 16)
    m = re.match(r"^\.([+-]\d+)", insn.args)
    return None if m is None else insn.addr + 2 + int(m.group(1))  # AVR: relative to the next word


def object_calls(arch, funcs, syms, obj):
    """{function: [callee names]} of one object. Callees are names as the relocations give them:
    sections are mapped to the function they hold. Branches inside a function are ignored."""
    by_section, section_of = {}, {}
    for name, _, section, value, _ in syms:
        by_section.setdefault(section, []).append((value, name))
        section_of[name] = section
    calls = {}
    for fname, insns in funcs.items():
        out = calls.setdefault(fname, [])
        own = section_of.get(fname)
        for insn in insns:
            if _indirect(arch, insn):
                raise StackCheckError(f"{obj}: {fname} makes an indirect call or jump ({insn.op} {insn.args} at "
                                      f"{insn.addr:#x}): a function pointer's callee cannot be bounded")
            is_call, is_jump = insn.op in CALLS[arch], _is_jump(arch, insn.op)
            if not (is_call or is_jump):
                continue
            if insn.reloc is None:  # resolved by the assembler: a target inside this function's section
                target = _branch_target(insn)
                if is_call and arch == "avr" and target == insn.addr + 2:
                    continue  # `rcall .+0`: reserves 2 bytes of frame, counted in the .su figure
                if is_call and arch == "arm" and target is not None and target != insns[0].addr:
                    continue  # Thumb-1 far branch inside the function (bl used as a long jump)
                if is_call:
                    raise StackCheckError(f"{obj}: {fname} calls {insn.args} at {insn.addr:#x}, which the "
                                          "disassembly does not resolve (recursion?)")
                continue
            m = _SYMREF.match(insn.reloc)
            name, offset = m.group(1), int(m.group(2) or "0", 16)
            if name.startswith("."):  # section-relative relocation
                if name == own and (is_jump or (arch == "avr" and offset == insn.addr + 2)):
                    continue  # a jump inside the function, or AVR's `rcall .+0` (2 bytes of frame, in the .su)
                held = sorted(by_section.get(name, []))
                if arch == "arm" and len(held) == 1:
                    offset = held[0][0]  # REL: the addend is in the instruction; one function per section
                match = [n for v, n in held if v == offset]
                if not match:
                    raise StackCheckError(f"{obj}: {fname}: {insn.op} to {insn.reloc}, which is not the start "
                                          "of a function")
                name = match[0]
            if name == fname and is_jump:
                continue
            out.append(name)
    return calls


def read_su(path):
    """{function: bytes} from a GCC .su file; a `dynamic` (unbounded) frame raises StackCheckError."""
    frames = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        where, size, kind = line.rsplit("\t", 2)
        name = where.rsplit(":", 1)[1]
        if "dynamic" in kind and "bounded" not in kind:
            raise StackCheckError(f"{where}: stack frame is dynamic and unbounded ({kind}): alloca or a "
                                  "variable-length array")
        frames[name] = max(int(size), frames.get(name, 0))  # GCC < 8 drops clone numbers: keep the largest
    return frames


# ------------------------------------------------------------------------------------------------
# library routines (no .su): bounded from their disassembly in a linked program

_ARM_REGS = re.compile(r"\{([^}]*)\}")


def _arm_reglist_bytes(args):
    m = _ARM_REGS.search(args)
    if m is None:
        raise StackCheckError(f"cannot read the register list of {args!r}")
    n = 0
    for part in m.group(1).split(","):
        part = part.strip()
        r = re.fullmatch(r"[rsd](\d+)-[rsd](\d+)", part)
        n += (int(r.group(2)) - int(r.group(1)) + 1) if r else 1
    return n * (8 if "d" in m.group(1) else 4)


def _push_bytes(arch, insn):
    """Bytes one instruction of a library routine moves the stack pointer down (0 if it does not);
    StackCheckError when it writes the stack pointer in another way."""
    op, args = insn.op, insn.args.replace(" ", "")
    if arch == "arm":
        if op in ("push", "push.w", "vpush"):
            return _arm_reglist_bytes(insn.args)
        if op.startswith("stmdb") and args.startswith("sp!"):
            return _arm_reglist_bytes(insn.args)
        m = re.fullmatch(r"sub(?:s|\.w)?", op) and re.fullmatch(r"sp,(?:sp,)?#(\d+)", args)
        if m:
            return int(m.group(1))
        m = re.fullmatch(r"str\S*", op) and re.search(r"\[sp,#-(\d+)\]!", args)
        if m:
            return int(m.group(1))
        if re.match(r"^sp,", args) and not op.startswith(("add", "cmp", "str", "stm")):
            raise StackCheckError(f"cannot bound {op} {insn.args}")  # e.g. mov sp, rN: an unknown amount
        return 0
    if op == "push":
        return 1
    if op == "rcall" and args.startswith(".+0"):
        return 2
    if op == "out" and re.match(r"^0x3[de],", args):
        raise StackCheckError(f"writes the stack pointer ({op} {insn.args})")
    return 0


def _successors(arch, insns, i):
    """(addresses execution may continue at, is a call) of instruction i of an address-sorted list,
    for the control-flow walk of a library routine. A call's target is not among the successors."""
    insn = insns[i]
    op, args = insn.op, insn.args.replace(" ", "")
    nxt = [insns[i + 1].addr] if i + 1 < len(insns) else []
    if arch == "avr":
        if op in ("ret", "reti"):
            return [], False
        if op in ("jmp", "rjmp"):
            return [_branch_target(insn)], False
        if op in ("call", "rcall"):
            return nxt, True
        if op.startswith("br"):
            return nxt + [_branch_target(insn)], False
        if op in ("sbrs", "sbrc", "sbis", "sbic", "cpse"):  # may skip the next instruction
            return nxt + ([insns[i + 2].addr] if i + 2 < len(insns) else []), False
        return nxt, False
    if op in ("b", "b.n", "b.w"):
        return [_branch_target(insn)], False
    if re.fullmatch(f"b{_ARM_COND}(\\.[nw])?", op):
        return nxt + [_branch_target(insn)], False
    if op in ("cbz", "cbnz"):
        return nxt + [int(args.split(",")[1].split("<")[0], 16)], False
    if op == "bl":
        return nxt, True
    if op in ("bx", "pop", "pop.w") and ("pc" in args or op == "bx"):
        return [], False
    if re.match(r"^(ldr|ldm|mov|add|sub)", op) and args.startswith("pc"):  # writes the pc
        if re.fullmatch(r"(ldr|ldm\w*|mov|add|sub)(\.w)?", op) or op.startswith("ldmia"):
            return [], False  # return (ldr pc, [sp], #8) or computed jump: refused below unless a return
        return nxt, False  # conditional (IT block): may continue
    if re.match(f"^(bx|pop){_ARM_COND}", op):
        return nxt, False  # conditional return inside an IT block
    return nxt, False


def library_frames(target, elf, names):
    """{routine: stack bytes incl. its callees} for the library routines `names`, from the
    disassembly of the linked program `elf`: walks every instruction reachable from the routine's
    entry (branches, jumps into shared tails, fall-through into the next label), sums the bytes its
    pushes and stack-pointer decrements reserve (refusing a push that lies on a cycle, i.e. in a loop),
    and adds the deepest routine it calls and the return address its own call pushed."""
    t = TARGETS[target]
    funcs = disassemble(t.objdump, elf)
    insns = sorted((i for body in funcs.values() for i in body), key=lambda i: i.addr)
    index = {insn.addr: k for k, insn in enumerate(insns)}
    addr = {}
    for name, _, _, value, _ in symbol_table(t.objdump, elf, code_labels=True):
        addr.setdefault(name, value & ~1 if t.arch == "arm" else value)
    name_at = {}
    for name, a in addr.items():
        name_at.setdefault(a, name)
    bound, active = {}, []

    def where(a):
        return name_at.get(a, f"{a:#x}")

    def routine(entry):
        if entry in bound:
            return bound[entry]
        if entry in active:
            raise StackCheckError(f"library routine {where(entry)} is recursive")
        if entry not in index:
            raise StackCheckError(f"library call to {entry:#x}, which is not code of the linked program")
        active.append(entry)
        succ, seen, todo, own, calls = {}, set(), [entry], 0, []
        while todo:
            a = todo.pop()
            if a in seen:
                continue
            if a not in index:
                raise StackCheckError(f"library routine {where(entry)}: branch to {a:#x}, not an instruction")
            seen.add(a)
            k = index[a]
            insn = insns[k]
            if insn.op.startswith("."):
                raise StackCheckError(f"library routine {where(entry)}: runs into data at {a:#x}")
            if _indirect(t.arch, insn) and not (t.arch == "arm" and insn.op == "bx" and insn.args == "lr"):
                raise StackCheckError(f"library routine {where(entry)}: indirect call or jump "
                                      f"({insn.op} {insn.args} at {a:#x})")
            try:
                nxt, is_call = _successors(t.arch, insns, k)
                pushed = _push_bytes(t.arch, insn)
            except (StackCheckError, TypeError, ValueError, IndexError) as exc:
                raise StackCheckError(f"library routine {where(entry)}: cannot follow {insn.op} {insn.args} "
                                      f"at {a:#x} ({exc})") from None
            if is_call:
                dest = _branch_target(insn)
                if t.arch == "avr" and dest == a + 2:
                    pushed = 2  # `rcall .+0` reserves 2 bytes
                else:
                    calls.append(dest)
            own += pushed
            succ[a] = nxt
            todo.extend(nxt)
        for a in seen:  # a push on a cycle could repeat: no bound
            if _push_bytes(t.arch, insns[index[a]]) or (t.arch == "avr" and insns[index[a]].op == "rcall"
                                                          and _branch_target(insns[index[a]]) == a + 2):
                stack, reach = list(succ[a]), set()
                while stack:
                    b = stack.pop()
                    if b == a:
                        raise StackCheckError(f"library routine {where(entry)}: push inside a loop at {a:#x}")
                    if b not in reach:
                        reach.add(b)
                        stack.extend(succ.get(b, ()))
        deepest = max((routine(c) for c in calls), default=0)
        active.pop()
        bound[entry] = t.call_push + own + deepest
        return bound[entry]

    frames = {}
    for name in names:
        if name not in addr:
            raise StackCheckError(f"{name}: not found in the linked program (an unresolved call)")
        frames[name] = routine(addr[name])
    return frames, {}


# ------------------------------------------------------------------------------------------------
# the export folder


def model_name(export_dir):
    """NAME of an export folder: the one header NAME.h that declares NAME_predict."""
    heads = [p.stem for p in sorted(Path(export_dir).glob("*.h")) if f"{p.stem}_predict" in p.read_text()]
    if len(heads) != 1:
        raise StackCheckError(f"{export_dir}: expected one model header (NAME.h declaring NAME_predict), "
                              f"found {heads}")
    return heads[0]


def analyze(export_dir, target="cortex-m3", opt=None, flags=(), roots=None, workdir=None, require_roots=True):
    """Deepest stack chains of an exported C folder built for `target` (see TARGETS) with `opt`
    (default: the target's default_opt) and extra `flags` (e.g. ["-DEBNN_CHUNK=8"]).

    roots: function names to report (default NAME_predict and NAME_predict_scratch); a static
      function is found by its name when only one object defines it.
    require_roots: False to leave out roots the objects do not define (e.g. kernels inlined away).
    Returns {root: Chain}. Raises StackCheckError when a chain cannot be bounded and
    RuntimeError when the build fails."""
    export_dir = Path(export_dir).resolve()
    if roots is None:
        name = model_name(export_dir)
        roots = [f"{name}_predict", f"{name}_predict_scratch"]
    frames, calls = call_graph(export_dir, target, opt, flags, workdir, entry=roots[0])
    found = {}
    for r in roots:
        nodes = [r] if r in frames else [n for n in frames if n.endswith(f".o:{r}")]
        if len(nodes) == 1:
            found[r] = nodes[0]
        elif nodes:
            raise StackCheckError(f"{r} is defined as a static function in several objects: {nodes}")
        elif require_roots:
            raise StackCheckError(f"{r} is not defined by the objects of {export_dir}")
    return {r: deepest_chain(frames, calls, node) for r, node in found.items()}


def call_graph(export_dir, target, opt=None, flags=(), workdir=None, entry=None):
    """(frames, calls) of an export folder's build: frames {node: bytes} and calls {node: [callees]},
    where a node is a global function's name, "OBJ.o:name" for a static one, or a library routine
    (its frame then includes its callees and calls is empty). `entry` names the function the
    program linked for the library routines starts at."""
    t = TARGETS[target]
    export_dir = Path(export_dir).resolve()
    opt = opt or t.default_opt
    sources = sorted(export_dir.glob("*.c"))
    if not sources:
        raise StackCheckError(f"{export_dir}: no .c files")
    with tempfile.TemporaryDirectory(prefix="ebnn-stack-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        objects = []
        for src in sources:
            obj = work / (src.stem + ".o")
            cmd = [t.cc, *t.flags, "-std=c99", opt, *flags, "-ffunction-sections", "-fstack-usage",
                   f"-I{export_dir}", "-c", str(src), "-o", str(obj)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"compile failed:\n{' '.join(cmd)}\n{proc.stderr}")
            objects.append(obj)
        frames, calls, globals_ = {}, {}, {}
        per_object = []
        for obj in objects:
            su = read_su(obj.with_suffix(".su"))
            syms = symbol_table(t.objdump, obj)
            local = {n for n, b, _, _, _ in syms if b == "l"}
            for n, b, _, _, _ in syms:
                if b != "l":
                    if n in globals_ and b == "g":
                        raise StackCheckError(f"{n} is defined in {globals_[n]} and {obj.name}")
                    globals_[n] = obj.name
            obj_calls = object_calls(t.arch, disassemble(t.objdump, obj), syms, obj.name)
            # GCC's identical code folding makes identical static functions (e.g. two kernel files' equal
            # bit-reading helpers in one NAME.c) aliases: one body, under the name objdump shows, with the
            # .su line under either name. Calls to an alias go to that body.
            at = {}
            for n, _, section, value, _ in syms:
                at.setdefault((section, value), []).append(n)
            alias = {n: shown[0] for names in at.values() for shown in [[m for m in names if m in obj_calls]]
                     if shown for n in names if n not in obj_calls}
            for n, body in alias.items():
                if n in su and body not in su:
                    su[body] = su[n]
            obj_calls = {f: [alias.get(c, c) for c in cs] for f, cs in obj_calls.items()}
            per_object.append((obj, su, syms, local, obj_calls))

        def node(obj, local, n):
            return f"{obj.name}:{n}" if n in local else n

        for obj, su, syms, local, obj_calls in per_object:
            for fname, callees in obj_calls.items():
                su_name = fname if fname in su else re.sub(r"\.\d+$", "", fname)  # foo.constprop.6 (GCC < 8)
                if su_name not in su:
                    raise StackCheckError(f"{obj.name}: no -fstack-usage figure for {fname}")
                frames[node(obj, local, fname)] = su[su_name]
                calls[node(obj, local, fname)] = [node(obj, local, c) for c in callees]
        missing = sorted({c for cs in calls.values() for c in cs if c not in frames})
        if missing:
            lib_frames, lib_calls = library_frames(target, _link(t, objects, opt, flags, entry or missing[0], work),
                                                   missing)
            frames.update(lib_frames)
            calls.update(lib_calls)
        return frames, calls


def _link(t, objects, opt, flags, entry, work):
    """A program of the objects + the toolchain's libraries (for the library routines' code)."""
    elf = work / "stackcheck.elf"
    extra = ["--specs=nano.specs"] if t.arch == "arm" else []
    cmd = [t.cc, *t.flags, opt, *flags, *extra, "-nostartfiles", f"-Wl,--entry={entry}", f"-Wl,-u,{entry}",
           *map(str, objects), "-o", str(elf), "-lm", "-lc", "-lgcc"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"link failed:\n{' '.join(cmd)}\n{proc.stderr}")
    return elf


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir")
    ap.add_argument("--target", default="cortex-m3", choices=sorted(TARGETS))
    ap.add_argument("--root", action="append",
                    help="function to start from (default NAME_predict and NAME_predict_scratch)")
    args, flags = ap.parse_known_args(argv)
    bad = [f for f in flags if not f.startswith(("-D", "-f", "-m", "-O"))]
    if bad:
        ap.error(f"unrecognised arguments: {' '.join(bad)} (compiler options: -O..., -D..., -f..., -m...)")
    opts = [f for f in flags if f.startswith("-O")]
    flags = [f for f in flags if not f.startswith("-O")]
    if not available(args.target):
        print(f"{TARGETS[args.target].cc} or {TARGETS[args.target].objdump} not found", file=sys.stderr)
        return 2
    try:
        chains = analyze(args.export_dir, args.target, opts[-1] if opts else None, flags, args.root)
    except (StackCheckError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for root, chain in chains.items():
        print(f"{root}: {chain}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
