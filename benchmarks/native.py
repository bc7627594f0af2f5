"""The benchmarks' C helpers (benchmarks/c/*.c), built with gcc at run time into a
temporary folder, and run."""

import subprocess
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "c"


class Tools:
    """getppid_loop, pingpong and httpload, compiled into `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name in ("getppid_loop", "pingpong", "httpload"):
            subprocess.run(
                ["gcc", "-O2", "-pthread", "-o", str(folder / name), str(SOURCES / f"{name}.c")],
                check=True,
            )

    def path(self, name: str) -> str:
        return str(self.folder / name)

    def ns_per_syscall(self, calls: int) -> tuple[float, float]:
        """(by the thread's CPU clock, by the wall clock)."""
        cpu, wall = self._run("getppid_loop", str(calls)).split()
        return float(cpu), float(wall)

    def ns_per_round_trip(self, trips: int, cpu: int = 0) -> float:
        return float(self._run("pingpong", str(trips), str(cpu)))

    def _run(self, name: str, *args: str) -> str:
        return subprocess.run(
            [self.path(name), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
