"""What the OS says about a process: CPU seconds, resident memory, children (Linux /proc).

No psutil: /proc/<pid>/stat holds utime and stime of every thread of the process in clock
ticks, /proc/<pid>/status holds VmRSS and VmHWM (peak RSS) in kB. A process tree's CPU is
the sum over the live processes of the tree (a `serve --workers N` parent and its workers).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU seconds (user + system) and RSS of one process or tree at one moment."""

    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


def _stat_fields(pid: int) -> list[str]:
    text = (PROC / str(pid) / "stat").read_text()
    # The command name (field 2) may hold spaces; everything after its ")" is space-split.
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of `pid` so far."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def parent_of(pid: int) -> int:
    """The parent pid of `pid`."""
    return int(_stat_fields(pid)[1])


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in values:
            values[name] = int(rest.split()[0]) / 1024.0
    return values["VmRSS"], values["VmHWM"]


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            children.setdefault(parent_of(int(entry.name)), []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def sample(pid: int, *, include_children: bool = False) -> ProcSample:
    """CPU and memory of `pid` (and its descendants, summed, when asked)."""
    pids = tree(pid) if include_children else [pid]
    cpu = rss = peak = 0.0
    for one in pids:
        try:
            cpu += cpu_seconds(one)
            now, high = memory_mb(one)
        except OSError:
            continue
        rss += now
        peak += high
    return ProcSample(cpu, rss, peak)


def pin_prefix(cores: str | None) -> list[str]:
    """`taskset -c <cores>` when taskset exists and cores are given, else nothing."""
    if not cores:
        return []
    taskset = shutil.which("taskset")
    return [taskset, "-c", cores] if taskset else []


def machine() -> dict[str, str | int]:
    """The CPU model and core count, for the report."""
    model = "unknown"
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": model, "cores": os.cpu_count() or 0}
