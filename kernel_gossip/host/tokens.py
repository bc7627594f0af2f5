"""A bearer token kept in a file that may be rotated under us (a Secret volume swaps its
files atomically): re-read whenever the file changes, and on demand after a 401.

Shared by the agent (the token it presents) and the operator (the token it expects).
"""

import logging
import os
import threading
from pathlib import Path

from kernel_gossip.errors import UserError

log = logging.getLogger("kernel_gossip.host.tokens")


class TokenFile:
    def __init__(self, path: Path, what: str = "--token-file") -> None:
        self.path = path
        self.what = what
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._token = self._read_or_fail()

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)  # follows the ..data symlink of a Secret volume
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _read(self) -> str:
        return self.path.read_text().strip()

    def _read_or_fail(self) -> str:
        """At start: an unreadable or empty file is the user's error."""
        self._seen = self._identity()
        try:
            token = self._read()
        except OSError as error:
            raise UserError(f"cannot read {self.what} {self.path}: {error.strerror}") from None
        if not token:
            raise UserError(f"{self.what} {self.path} is empty")
        return token

    def current(self) -> str:
        """The token, re-read if the file changed since it was last read."""
        with self._lock:
            if self._identity() != self._seen:
                self._reload_locked()
            return self._token

    def reload(self) -> str:
        """Read the file again (after a 401: the peer may hold a newer token)."""
        with self._lock:
            self._reload_locked()
            return self._token

    def _reload_locked(self) -> None:
        self._seen = self._identity()
        try:
            token = self._read()
        except OSError as error:
            log.warning("cannot re-read %s: %s; keeping the previous token", self.path, error)
            return
        if not token:
            log.warning("%s is empty (being rotated?); keeping the previous token", self.path)
            return
        if token != self._token:
            log.info("token in %s changed: using the new one", self.path)
        self._token = token
