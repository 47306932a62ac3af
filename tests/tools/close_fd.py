#!/usr/bin/env python3
"""close_fd.py PID FD: closes descriptor FD inside process PID (x86_64 Linux, root), as a bug elsewhere
in that process could. Prints "close(FD) = RESULT" and exits 0 when RESULT is 0.

gdb's `call (int)close(FD)` did this until it met CPUs with AMX: gdb 13 cannot write their extended
register state back ("Couldn't write extended state status: Bad address"). This touches only the
general registers: it stops one thread that waits in a system call, points it at that call's own
`syscall` instruction with close's number and FD, steps over it, reads the result and puts every
register back, so the interrupted call is restarted as after any signal.
"""

import ctypes
import os
import sys

PTRACE_PEEKTEXT = 1
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000
SYS_CLOSE = 3
SYSCALL_INSN = 0x050F  # 0f 05, little-endian

# struct user_regs_struct (x86_64), in order.
FIELDS = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
          "fs_base gs_base ds es fs gs").split()


class Regs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in FIELDS]


libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(request, tid, addr=None, data=None, check=True):
    ctypes.set_errno(0)
    result = libc.ptrace(request, tid, addr, data)
    err = ctypes.get_errno()
    if check and result == -1 and err != 0:
        raise OSError(err, f"ptrace({request}, {tid}): {os.strerror(err)}")
    return result


def waiting_threads(pid):
    """The threads of `pid` blocked in a system call."""
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) == 9 and fields[0] != "-1":
            yield tid


def close_in(tid, fd):
    ptrace(PTRACE_SEIZE, tid)
    try:
        ptrace(PTRACE_INTERRUPT, tid)
        os.waitpid(tid, WALL)
        saved = Regs()
        ptrace(PTRACE_GETREGS, tid, None, ctypes.byref(saved))
        word = ptrace(PTRACE_PEEKTEXT, tid, ctypes.c_void_p(saved.rip - 2), check=False)
        if word & 0xFFFF != SYSCALL_INSN:
            return None
        regs = Regs.from_buffer_copy(saved)
        regs.rip = saved.rip - 2
        regs.rax = SYS_CLOSE
        regs.rdi = fd
        regs.orig_rax = 2**64 - 1  # -1: not in a system call, so the kernel restarts nothing here
        ptrace(PTRACE_SETREGS, tid, None, ctypes.byref(regs))
        ptrace(PTRACE_SINGLESTEP, tid)
        os.waitpid(tid, WALL)
        ptrace(PTRACE_GETREGS, tid, None, ctypes.byref(regs))
        result = ctypes.c_longlong(regs.rax).value
        ptrace(PTRACE_SETREGS, tid, None, ctypes.byref(saved))
        return result
    finally:
        ptrace(PTRACE_DETACH, tid, check=False)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pid, fd = int(sys.argv[1]), int(sys.argv[2])
    for tid in waiting_threads(pid):
        result = close_in(tid, fd)
        if result is not None:
            print(f"close({fd}) = {result} (thread {tid})")
            sys.exit(0 if result == 0 else 1)
    sys.exit(f"no thread of {pid} waits in a system call")


if __name__ == "__main__":
    main()
