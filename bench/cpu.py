"""Where the CPU of a load run went: the gateway's processes, the database server, the load
generator itself, and the whole machine (Linux /proc; elsewhere the figures are absent).

Why a bench needs this: on a small machine the load generator and the database share
the cores with the gateway. Requests per second alone cannot say whether the gateway
ran out of CPU, of its one interpreter lock, or of cores left over by the others;
CPU milliseconds per request, per party, can.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
DATABASE_COMMANDS: Final = frozenset({"postgres"})
"""Process names counted as the database server (every process of it, backends included)."""


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """Cumulative CPU seconds at one moment."""

    gateway: float
    database: float
    load_generator: float
    machine_busy: float
    machine_total: float
    """Busy plus idle over all cores, so busy/total is the machine's utilisation."""
    gateway_switches: int = 0
    """Context switches of the gateway's threads so far, voluntary and not (a thread that hands
    the GIL to another and waits to win it back switches twice)."""


def available() -> bool:
    return (PROC / "stat").is_file()


def _ticks_per_second() -> int:
    return os.sysconf("SC_CLK_TCK")


def _read_stat(text: str, ticks: int) -> tuple[int, str, float]:
    """(parent pid, command name, CPU seconds used: user + system, all threads) from /proc/PID/stat."""
    # The command name is in parentheses and may itself hold spaces or parentheses.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    parent, user, system = int(fields[1]), int(fields[11]), int(fields[12])  # fields 4, 14 and 15 of proc(5)
    return parent, name, (user + system) / ticks


def process_seconds(pid: int) -> float:
    """CPU seconds one process (all its threads) has used: user + system."""
    return _read_stat((PROC / str(pid) / "stat").read_text(), _ticks_per_second())[2]


def _process_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds used: user + system)."""
    ticks = _ticks_per_second()
    table = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        table[int(entry.name)] = _read_stat(text, ticks)
    return table


def _descendants(table: dict[int, tuple[int, str, float]], root: int) -> set[int]:
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _, _) in table.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier.extend(children)
    return found


def _machine() -> tuple[float, float]:
    """(busy, busy + idle) CPU seconds since boot, all cores."""
    first = (PROC / "stat").read_text().splitlines()[0].split()
    user, nice, system, idle, iowait, irq, softirq, steal = (int(value) for value in first[1:9])
    busy = user + nice + system + irq + softirq + steal
    ticks = _ticks_per_second()
    return busy / ticks, (busy + idle + iowait) / ticks


def _context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid`` (0 once it has ended)."""
    total = 0
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended while we looked
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def snapshot(gateway_pid: int | None) -> CpuSnapshot:
    table = _process_table()
    gateway = 0.0
    switches = 0
    if gateway_pid is not None and gateway_pid in table:
        processes = [pid for pid in _descendants(table, gateway_pid) if pid in table]
        gateway = sum(table[pid][2] for pid in processes)
        switches = sum(_context_switches(pid) for pid in processes)
    database = sum(cpu for _, name, cpu in table.values() if name in DATABASE_COMMANDS)
    times = os.times()
    busy, total = _machine()
    return CpuSnapshot(gateway, database, times.user + times.system, busy, total, switches)


def per_request(before: CpuSnapshot, after: CpuSnapshot, requests: int) -> dict[str, float]:
    """CPU milliseconds per request by party, and the machine's utilisation over the window (all
    of it, and what none of the parties used: other programs sharing the cores)."""
    if requests <= 0:
        return {}

    def ms(field: str) -> float:
        return round((getattr(after, field) - getattr(before, field)) * 1000 / requests, 2)

    window = after.machine_total - before.machine_total
    busy = after.machine_busy - before.machine_busy
    gateway, database = after.gateway - before.gateway, after.database - before.database
    load_generator = after.load_generator - before.load_generator
    return {
        "gateway_cpu_ms": ms("gateway"),
        "gateway_context_switches": round((after.gateway_switches - before.gateway_switches) / requests, 1),
        "database_cpu_ms": ms("database"),
        "load_generator_cpu_ms": ms("load_generator"),
        "machine_cpu_ms": ms("machine_busy"),
        "machine_busy_percent": round(100 * busy / window, 1) if window > 0 else 0.0,
        "others_busy_percent": round(100 * (busy - gateway - database - load_generator) / window, 1) if window > 0 else 0.0,
    }
