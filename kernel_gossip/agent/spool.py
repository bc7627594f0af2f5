"""A bounded, ordered, on-disk queue of signals waiting for the operator.

Every signal goes through it, so the order of delivery is the order of measurement, a
restart of the agent loses nothing that was spooled, and an operator outage costs only
disk space. Each signal is one file named by a sequence number, written to a temporary
name and renamed (a reader never sees half a signal). When the spool is full the oldest
signal is dropped and counted: measuring never waits for delivery. A signal that cannot
be written (the disk is full) is dropped too, its half-written file removed: the caller
counts it (SpoolWriteError) and measuring goes on.
"""

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".json"


class SpoolWriteError(Exception):
    """The signal could not be written (ENOSPC, EDQUOT, EIO, ...): it is not spooled."""

    def __init__(self, error: OSError) -> None:
        self.errno_name = errno.errorcode.get(error.errno or 0, "OSError")
        super().__init__(f"cannot spool a signal: {error.strerror or error}")


@dataclass(frozen=True)
class Spooled:
    sequence: int
    body: bytes


class Spool:
    def __init__(self, directory: Path, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a spool holds at least one signal")
        self.directory = directory
        self.capacity = capacity
        self.dropped = 0
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()  # a write interrupted by a crash: never renamed, never sent
        sequences = self._sequences()
        self._next = (sequences[-1] + 1) if sequences else 0

    def _sequences(self) -> list[int]:
        return sorted(
            int(path.name.removesuffix(SUFFIX))
            for path in self.directory.iterdir()
            if path.name.endswith(SUFFIX) and path.name.removesuffix(SUFFIX).isdigit()
        )

    def _path(self, sequence: int) -> Path:
        return self.directory / f"{sequence:020d}{SUFFIX}"

    def put(self, body: bytes) -> int:
        """Append a signal; drops the oldest ones beyond capacity. Returns its sequence;
        raises SpoolWriteError when it cannot be written."""
        with self._lock:
            sequence = self._next
            self._next += 1
            temporary = self.directory / f"{sequence:020d}.tmp"
            try:
                with open(temporary, "wb") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                temporary.rename(self._path(sequence))
            except OSError as error:
                temporary.unlink(missing_ok=True)
                raise SpoolWriteError(error) from None
            sequences = self._sequences()
            for oldest in sequences[: max(len(sequences) - self.capacity, 0)]:
                self._path(oldest).unlink(missing_ok=True)
                self.dropped += 1
            return sequence

    def peek(self, limit: int) -> list[Spooled]:
        """The oldest signals, at most `limit`, oldest first; they stay until acked."""
        with self._lock:
            found = []
            for sequence in self._sequences()[:limit]:
                try:
                    found.append(Spooled(sequence, self._path(sequence).read_bytes()))
                except FileNotFoundError:
                    continue  # dropped meanwhile
            return found

    def ack(self, sequence: int) -> None:
        """The operator has it: remove it from the spool."""
        with self._lock:
            self._path(sequence).unlink(missing_ok=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sequences())
