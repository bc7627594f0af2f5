"""The lab's background processes (etcd, the API server, containerd, operator, agent):
started detached with a pid file and a log, found again by pid file, stopped by pid.

A pid file alone is not proof: the pid may have been reused. A process is ours when it
is alive (not a zombie) and its command line holds a marker only it has (the lab
directory or its config file).
"""

import contextlib
import http.server
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def serve_healthz(
    healthy: Callable[[], bool], host: str, port: int
) -> http.server.ThreadingHTTPServer:
    """/healthz of a lab component, as its real counterpart answers: 200 "ok" when
    healthy() says so, else 503; served from a daemon thread."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/healthz":
                self.send_error(404)
                return
            ok = healthy()
            body = b"ok" if ok else b"not ready"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a probe every few seconds is no news."""

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
