"""Loading our BPF C programs with BCC, after checking what they need from the host.

Every missing prerequisite becomes a UserError naming the cause and the fix.
"""

import os
import subprocess
import threading
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


def load(program: str, defines: dict[str, int | None]) -> Any:
    """Compile and attach bpf/<program> (its TRACEPOINT_PROBEs attach themselves)."""
    check_prerequisites()
    from bcc import BPF

    cflags = [
        f"-D{name}" if value is None else f"-D{name}={value}" for name, value in defines.items()
    ]
    try:
        with _COMPILING:
            return BPF(src_file=str(bpf_source(program)).encode(), cflags=cflags)
    except Exception as error:  # BCC raises bare Exceptions for compile and load failures
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise UserError(
            f"the kernel or BCC refused {program}: {first_line} (is BPF enabled? {SETUP_HINT})"
        ) from None
