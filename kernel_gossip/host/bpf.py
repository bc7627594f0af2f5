"""Loading our BPF C programs with BCC, after checking what they need from the host.

Every missing prerequisite becomes a UserError naming the cause and the fix.
"""

import contextlib
import ctypes
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kernel_gossip.errors import UserError
from kernel_gossip.paths import bpf_source

SETUP_HINT = "run scripts/setup.sh as root"
TRACEFS = Path("/sys/kernel/tracing")
COMPILER_LIBRARIES = ("libLLVM", "libclang")  # BCC's in-process compiler
MADV_DONTNEED = 4
_COMPILING = threading.Lock()  # BCC's LLVM front end crashes when two threads compile at once


def check_prerequisites() -> None:
    """Root, BCC, kernel headers and tracefs: what every probe needs."""
    if os.geteuid() != 0:
        raise UserError("needs root (BPF and cgroupfs): run it with sudo")
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise UserError(
            "BCC's Python module is not importable: install python3-bpfcc and use the venv "
            f"that sees Debian's packages ({SETUP_HINT})"
        ) from None
    release = os.uname().release
    headers = Path("/lib/modules") / release / "build"
    if not (headers / "include").is_dir():
        raise UserError(f"no kernel headers at {headers} for BCC to compile with: {SETUP_HINT}")
    _ensure_tracefs()


def _ensure_tracefs() -> None:
    if (TRACEFS / "events").is_dir():
        return
    result = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True
    )
    if result.returncode != 0 or not (TRACEFS / "events").is_dir():
        raise UserError(
            f"tracefs is not mounted at {TRACEFS} and mounting it failed: "
            f"mount -t tracefs nodev {TRACEFS}"
        )


@contextlib.contextmanager
def _libbcc_stderr() -> Iterator[list[str]]:
    """What libbcc writes to file descriptor 2 while compiling and loading (its C code
    prints there directly): kept out of the terminal, handed back as lines."""
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(capture.read().decode(errors="replace").splitlines())


def refusal(program: str, error: str, libbcc_lines: list[str]) -> str:
    """One line saying why a program did not load, and what to do about it."""
    detail = next(
        (line.strip() for line in libbcc_lines if "not permitted" in line or "error" in line),
        error.strip().splitlines()[0] if error.strip() else "unknown error",
    )
    if "not permitted" in detail or "super-user" in error:
        return (
            f"the kernel refused {program}: {detail}: the probes need CAP_BPF and "
            "CAP_PERFMON (or root)"
        )
    return f"BCC could not load {program}: {detail} (is BPF enabled? {SETUP_HINT})"


def load(program: str, defines: dict[str, int | None]) -> Any:
    """Compile and attach bpf/<program> (its TRACEPOINT_PROBEs attach themselves)."""
    check_prerequisites()
    from bcc import BPF

    cflags = [
        f"-D{name}" if value is None else f"-D{name}={value}" for name, value in defines.items()
    ]
    with _COMPILING, _libbcc_stderr() as libbcc_lines:
        try:
            loaded = BPF(src_file=str(bpf_source(program)).encode(), cflags=cflags)
        except Exception as error:  # BCC raises bare Exceptions for compile and load failures
            failure = str(error)
        else:
            _release_compiler_memory()
            return loaded
    raise UserError(refusal(program, failure, libbcc_lines))


def compiler_code_ranges(maps: str) -> list[tuple[int, int]]:
    """(start, end) of the executable, never-written mappings of LLVM's and clang's shared
    libraries in a /proc/PID/maps text."""
    ranges = []
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "r-xp":
            continue
        name = fields[5].rsplit("/", 1)[-1]
        if name.startswith(COMPILER_LIBRARIES):
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def _release_compiler_memory() -> None:
    """After a compile, give back what only the compile needed (measured on the agent: 218
    MiB RSS without this). glibc keeps the tens of MiB clang and LLVM freed: malloc_trim
    returns them. LLVM's and clang's code (~74 MiB touched) stays mapped: MADV_DONTNEED
    unmaps it; it is read-only text, so nothing is lost, and a later compile faults it back
    in from the page cache or the file."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.malloc_trim(0)
    except AttributeError:  # not glibc
        return
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for start, end in compiler_code_ranges(Path("/proc/self/maps").read_text()):
        libc.madvise(start, end - start, MADV_DONTNEED)
