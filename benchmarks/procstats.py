"""Server-side measurements from /proc: PSS, CPU time, kernel socket memory.

All sums are over a process tree (the supervisor and every descendant), so a
multi-process gateway and the one-process baseline are measured the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE: Final = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    return raw[raw.rfind(")") + 2 :].split()


def process_tree(roots: Iterable[int]) -> list[int]:
    """``roots`` and all their live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    stack = [r for r in roots if Path(f"/proc/{r}").exists()]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def cpu_seconds(pids: Iterable[int], *, kernel_only: bool = False) -> float:
    """utime + stime (or stime alone) of the given processes, all their threads, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state=0, ppid=1, ..., utime=11, stime=12 (proc(5) fields 14, 15).
            ticks += (0 if kernel_only else int(fields[11])) + int(fields[12])
    return ticks / CLK_TCK


def cpu_by_process(pids: Iterable[int]) -> dict[str, float]:
    """utime + stime in seconds per process name (``/proc/PID/comm``; same names are summed)."""
    out: dict[str, float] = {}
    for pid in pids:
        fields = _stat_fields(pid)
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if fields is not None:
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def pss_bytes(pids: Iterable[int]) -> int:
    """Summed proportional set size, from /proc/PID/smaps_rollup."""
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            continue
    return total_kb * 1024


@dataclass(frozen=True, slots=True)
class SockStat:
    """Host-wide TCP socket figures from /proc/net/sockstat (both ends of loopback pairs)."""

    tcp_inuse: int
    tcp_mem_bytes: int


def sockstat() -> SockStat:
    inuse = mem = 0
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            values = dict(zip(parts[1::2], parts[2::2], strict=False))
            inuse = int(values.get("inuse", 0))
            mem = int(values.get("mem", 0)) * PAGE
    return SockStat(inuse, mem)


class ServerProbe:
    """CPU and memory of a server identified by root PIDs (``None``: not measurable)."""

    def __init__(self, roots: list[int] | None) -> None:
        self.roots = roots

    @property
    def available(self) -> bool:
        return bool(self.roots)

    def pids(self) -> list[int]:
        return process_tree(self.roots or [])

    def cpu(self) -> float | None:
        return cpu_seconds(self.pids()) if self.roots else None

    def kernel_cpu(self) -> float | None:
        """System (kernel) CPU seconds alone: on loopback this includes the receiving side's
        TCP work, which the kernel charges to the sending process."""
        return cpu_seconds(self.pids(), kernel_only=True) if self.roots else None

    def cpu_split(self) -> dict[str, float] | None:
        """CPU seconds per process name (e.g. npg-router, npg-worker-0)."""
        return cpu_by_process(self.pids()) if self.roots else None

    def pss(self) -> int | None:
        return pss_bytes(self.pids()) if self.roots else None
