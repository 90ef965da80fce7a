"""``serve --workers N``: N gateway processes on one port, sharing one PostgreSQL store.

Each worker is a full gateway (verify, decide, answer) listening on the same
address with ``SO_REUSEPORT``, so the kernel spreads connections across them.
What they must agree on lives in the database: replay counters, ADT windows,
quarantine, the outbox, the command queue and the audit log (see
:mod:`gateway.store.postgresql` for how the store keeps them consistent).
Each worker also runs a share of the simulated meters (EUI-64 modulo N) and
executes the queued commands to them, so no meter has two executors; a worker
shows the others' meters from the states their worker stored.

The supervisor (this process) restarts a worker that dies, and on SIGINT or
SIGTERM stops them all (each finishes what it has in flight). A worker whose
supervisor is gone (killed with -9) stops by itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from gateway.logs import BatchedStreamHandler
from gateway.store.base import MAX_SHARDS, Shard

LOG = logging.getLogger("dcc_gateway.workers")

RESTART_DELAY_SECONDS: Final = 0.5
STOP_TIMEOUT_SECONDS: Final = 30.0
_PARENT_POLL_SECONDS: Final = 0.5


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    directory: Path
    host: str
    port: int
    store_url: str
    index: int
    count: int

    @property
    def shard(self) -> Shard:
        return Shard(self.index, self.count)


def prepare_worker(spec: WorkerSpec) -> None:
    """In a new worker process, before it serves: its log lines, its signals, its supervisor watched."""
    logging.basicConfig(level=logging.INFO, format=f"[worker {spec.index}] %(message)s",
                        handlers=[BatchedStreamHandler(sys.stderr)])
    # ^C reaches the whole process group; the supervisor turns it into one SIGTERM per worker.
    # A second signal in the middle of a clean stop would cut that stop short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stop_with_parent(os.getppid())


def _stop_with_parent(parent: int) -> None:
    """SIGTERM to ourselves once the supervisor is gone (a clean stop, as if it had asked)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


WorkerBody = Callable[[WorkerSpec], None]
"""What a worker process runs (:func:`gateway.server.run_worker`)."""


class Supervisor:
    """Starts the workers, restarts any that dies, stops them all on SIGINT/SIGTERM."""

    def __init__(self, specs: list[WorkerSpec], target: WorkerBody) -> None:
        self._specs = specs
        self._target = target
        self._context = multiprocessing.get_context("spawn")  # no inherited event loop or sockets
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._stopping = threading.Event()

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        for spec in self._specs:
            self._start(spec)
        while not self._stopping.wait(RESTART_DELAY_SECONDS):
            for spec in self._specs:
                process = self._processes[spec.index]
                if not process.is_alive() and not self._stopping.is_set():
                    LOG.warning("worker %d exited with %s: restarting it", spec.index, process.exitcode)
                    self._start(spec)
        return self._stop_all()

    def _start(self, spec: WorkerSpec) -> None:
        process = self._context.Process(target=self._target, args=(spec,), name=f"dcc-gateway-worker-{spec.index}")
        process.start()
        self._processes[spec.index] = process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping.set()

    def _stop_all(self) -> int:
        for process in self._processes.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in self._processes.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                LOG.error("worker %s did not stop within %.0f s: killing it", process.name, STOP_TIMEOUT_SECONDS)
                process.kill()
        return 0


def serve_workers(
    directory: Path, *, host: str, port: int, store_url: str, workers: int, target: WorkerBody
) -> int:
    """Supervises ``workers`` processes, each running ``target`` (a module-level function: the
    processes are spawned, so it is found again by its name)."""
    logging.basicConfig(level=logging.INFO, format="[supervisor] %(message)s")
    if workers > MAX_SHARDS:
        raise SystemExit(f"dcc-gateway serve: at most {MAX_SHARDS} workers")
    specs = [WorkerSpec(directory, host, port, store_url, index, workers) for index in range(workers)]
    return Supervisor(specs, target).run()
