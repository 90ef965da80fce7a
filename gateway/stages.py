"""Where a request's CPU goes: always-on timers per stage of the request path.

Each stage adds the CPU time of the thread that ran it (``time.thread_time_ns``: what that
thread computed, not the time it waited for the GIL, a lock or the disk), so stages running
in different threads add up without counting one wait twice. ``/metrics`` exposes the
totals as ``dcc_gateway_stage_cpu_seconds_total{stage=...}``; ``bench/load.py`` divides them
by the requests of a run and sets them beside the process's CPU from ``/proc``, whose
remainder is what no stage names (the event loop itself, scheduling, garbage collection).

Cheap enough to stay on: one clock read per boundary (about 0.3 µs) and an addition. Each
thread adds into a table of its own, so no lock is taken on the request path and no
addition is lost between threads; the totals are summed when ``/metrics`` is read.
"""

from __future__ import annotations

import threading
import time
from typing import Final

STAGES: Final = (
    "http",
    "verify",
    "policy",
    "store",
    "commit",
    "audit",
    "sign",
    "handoff",
    "log",
    "metrics",
    "console",
)
"""http: reading requests and writing answers (aiohttp's parser, the body, the socket writes);
verify: parse, schema, canonicalisation, certificate and signature checks; policy: the
authorisation checks and what a decision builds (the Pre-Command, the queued command, its
audit entry); store: the store's transactions (SQLite's COMMIT apart), less what ``audit`` names;
commit: the COMMIT (SQLite: writing and fsyncing the WAL, on the store's thread, most of it
kernel time); audit: serialising and hash-chaining audit records; sign: building and signing answers;
handoff: handing work to another thread and taking its result back; log, metrics, console:
the request log line, the Prometheus counters, the console's ring of recent exchanges."""

now_ns = time.thread_time_ns
"""The clock every stage reads: CPU nanoseconds of the calling thread."""


class StageTimers:
    """CPU nanoseconds per stage, summed over every thread that added to it."""

    def __init__(self) -> None:
        self._tables: list[dict[str, int]] = []
        self._local = threading.local()
        self._register = threading.Lock()

    def add(self, stage: str, nanoseconds: int) -> None:
        """Adds ``nanoseconds`` of the calling thread's CPU to ``stage`` (one of :data:`STAGES`)."""
        table: dict[str, int] | None = getattr(self._local, "table", None)
        if table is None:
            table = self._new_table()
        table[stage] += nanoseconds

    def since(self, stage: str, started_ns: int) -> int:
        """Adds the calling thread's CPU since ``started_ns`` (a :func:`now_ns` reading) to
        ``stage``; returns the clock now, so consecutive stages share one reading."""
        now = now_ns()
        self.add(stage, now - started_ns)
        return now

    def seconds(self) -> dict[str, float]:
        """Stage -> CPU seconds so far, every thread's together."""
        totals = dict.fromkeys(STAGES, 0)
        for table in list(self._tables):
            for stage, nanoseconds in table.items():
                totals[stage] += nanoseconds
        return {stage: nanoseconds / 1e9 for stage, nanoseconds in totals.items()}

    def _new_table(self) -> dict[str, int]:
        table = dict.fromkeys(STAGES, 0)
        self._local.table = table
        with self._register:
            self._tables.append(table)
        return table
