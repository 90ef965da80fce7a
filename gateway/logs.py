"""The gateway's log output: lines written to their stream in batches, not one write per line.

Under load the request log has a line per request; written one by one, each is a write
system call on the event loop (and a turn of the GIL given away), which cost more than the
line itself. :class:`BatchedStreamHandler` collects formatted lines and writes them together,
at most ``interval`` seconds after the oldest, at once for a warning or worse, and on
``flush()`` (the runtime flushes every second, so an idle gateway's last lines are not
held back; ``logging.shutdown`` flushes at exit). What a kill -9 can take with it is the
last interval's lines: the request log is for people; what must survive is in the audit log.
"""

from __future__ import annotations

import logging
import time
from typing import Final, TextIO

FLUSH_INTERVAL_SECONDS: Final = 0.25
"""The longest a line waits in the buffer while lines keep coming."""
MAX_BUFFERED_LINES: Final = 512


class BatchedStreamHandler(logging.Handler):
    """A StreamHandler that writes its lines in batches (see the module's docstring)."""

    def __init__(self, stream: TextIO, *, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        super().__init__()
        self._stream = stream
        self._interval = interval
        self._lines: list[str] = []
        self._oldest = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        now = time.monotonic()
        if not self._lines:
            self._oldest = now
        self._lines.append(line)
        due = now - self._oldest >= self._interval or len(self._lines) >= MAX_BUFFERED_LINES
        if due or record.levelno >= logging.WARNING:
            self._write()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._write()

    def close(self) -> None:
        self.flush()
        super().close()

    def _write(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: the lines are lost, the gateway is not
            pass


def flush_all() -> None:
    """Flushes every handler of the root logger (the runtime's periodic flush)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
