"""Loading our BPF C programs with BCC, after checking what they need from the host.

Every missing prerequisite becomes a UserError naming the cause and the fix.
"""

import contextlib
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
            return BPF(src_file=str(bpf_source(program)).encode(), cflags=cflags)
        except Exception as error:  # BCC raises bare Exceptions for compile and load failures
            failure = str(error)
    raise UserError(refusal(program, failure, libbcc_lines))
