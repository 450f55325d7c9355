"""Summarise py-spy's collapsed stacks (`py-spy record -f raw`): where the CPU went.

Prints the share of samples per area (the innermost frame of ours or of a library decides),
the functions with the most inclusive time in provider_router, and the top self-time
frames. Shares are of all samples py-spy took of the server's busy threads.

Usage: python -m bench.profile_summary /tmp/chat64.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")

AREAS = (
    ("provider_router/api/", "ours: api (servicer, convert, interceptors)"),
    ("provider_router/telemetry/", "ours: telemetry"),
    ("provider_router/routing/", "ours: routing"),
    ("provider_router/connectors/", "ours: connectors"),
    ("provider_router/resilience/", "ours: resilience"),
    ("provider_router/state/", "ours: state"),
    ("provider_router/", "ours: other"),
    ("grpc/", "grpc"),
    ("aiohttp/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("pybreaker/", "pybreaker"),
    ("prometheus_client/", "prometheus_client"),
    ("google/protobuf/", "protobuf"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "uvloop"),
    ("json/", "json"),
    ("logging/", "logging"),
)


def parse(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    """Collapsed stack lines → [( [(function, file), ...] outermost first, count )]."""
    stacks = []
    for line in text.splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = []
        for raw in body.split(";"):
            match = _FRAME.match(raw)
            frames.append((match["func"], match["file"]) if match else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def area_of(path: str) -> str | None:
    """The area a source file belongs to, or None for anything else."""
    for prefix, area in AREAS:
        if prefix in path:
            return area
    return None


def innermost_area(frames: list[tuple[str, str]]) -> str:
    """The area of the innermost frame that belongs to one (native code counts as its caller)."""
    for _, path in reversed(frames):
        area = area_of(path)
        if area is not None:
            return area
    return "other"


def summarise(stacks: list[tuple[list[tuple[str, str]], int]], top: int) -> str:
    """The report as text."""
    total = sum(count for _, count in stacks) or 1
    areas: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        areas[innermost_area(frames)] += count
        seen = {f"{func} ({path})" for func, path in frames if "provider_router/" in path}
        for name in seen:
            ours[name] += count
        if frames:
            func, path = frames[-1]
            leaves[f"{func} ({path})"] += count
    lines = [f"{total} samples", "", "share by area (innermost known frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in areas.most_common()]
    lines += ["", f"provider_router functions, inclusive (top {top}):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    lines += ["", f"self time, innermost frame (top {top}):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    """Read the file and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(parse(args.file.read_text()), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
