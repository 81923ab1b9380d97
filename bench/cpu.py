"""Per-process CPU use over a phase, from /proc/<pid>/stat (utime + stime, all threads)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its closing ')' are fixed.
    fields = raw[raw.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def machine_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot, all cores together.

    Busy is user + nice + system + irq + softirq; stolen is time a virtual CPU wanted to run
    but the hypervisor ran something else.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


@dataclass
class CpuWindow:
    """CPU used by each named process between `start()` and `stop()`, as % of one core.

    `other processes` is the machine's busy time minus ours: anything else running then (a test
    suite, another stack) competes for the same cores and makes the figures worse.
    """

    pids: dict[str, int]

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = {n: cpu_seconds(p) for n, p in self.pids.items()}
        self._m0 = machine_seconds()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            before, after = self._c0.get(name), cpu_seconds(pid)
            if before is not None and after is not None and wall > 0:
                out[name] = 100.0 * (after - before) / wall
        if wall > 0:
            busy, steal = machine_seconds()
            ours = sum(out.values())
            out["other processes"] = max(0.0, 100.0 * (busy - self._m0[0]) / wall - ours)
            out["hypervisor steal"] = 100.0 * (steal - self._m0[1]) / wall
        return out
