"""The lab's background processes (etcd, the API server, containerd, operator, agent):
started detached with a pid file and a log, found again by pid file, stopped by pid.

A pid file alone is not proof: the pid may have been reused. A process is ours when it
is alive (not a zombie) and its command line holds a marker only it has (the lab
directory or its config file).
"""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

KILL_WAIT_SECONDS = 10.0


def alive(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in pid_file when that process is alive and its command line holds marker."""
    try:
        pid = int(pid_file.read_text().strip())
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and marker in command_line else None


def spawn_detached(command: list[str], log: Path, pid_file: Path) -> subprocess.Popen[bytes]:
    """Start a process in a session of its own (it outlives the command that started it),
    output appended to log, its pid written to pid_file."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
            return True
    return not alive(pid)


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout` seconds; True once the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_WAIT_SECONDS)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _gone(pid):
                return True
            time.sleep(0.05)
    return _gone(pid)
