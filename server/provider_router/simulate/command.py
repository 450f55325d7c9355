"""`provider-router simulate`: read the log and both configs, run both, print the report.

Every user mistake (a missing or unreadable log, a malformed line under --strict, a bad
config, a log without chat requests) is a message naming the problem and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from provider_router.config import Config, load_config
from provider_router.errors import ConfigError
from provider_router.simulate import report
from provider_router.simulate.engine import Simulation, SimulationResult
from provider_router.simulate.records import RecordedLog, read_log


class UsageError(Exception):
    """A mistake in what the user gave the command (exit 2)."""


def _config(path: Path | None, role: str, env: dict[str, str]) -> Config:
    try:
        return load_config(path, env)
    except ConfigError as error:
        raise UsageError(f"{role} config {path or '(defaults)'}: {error.message}") from None


def _log(path: Path, strict: bool) -> RecordedLog:
    try:
        log = read_log(path)
    except FileNotFoundError:
        raise UsageError(f"--log {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--log {path}: cannot be read ({error})") from None
    if strict and log.malformed:
        bad = log.malformed[0]
        raise UsageError(f"--log {path}: line {bad.line}: {bad.problem} "
                         f"({len(log.malformed)} malformed lines)")
    if not log.requests:
        raise UsageError(f"--log {path}: no chat requests to replay "
                         f"({len(log.malformed)} malformed, {log.ignored} ignored lines)")
    return log


async def _both(candidate: Config, baseline: Config, log: RecordedLog, env: dict[str, str],
                seed: int) -> tuple[SimulationResult, SimulationResult]:
    return (await Simulation(candidate, env, seed).run(log.requests),
            await Simulation(baseline, env, seed).run(log.requests))


def run(args: argparse.Namespace) -> int:
    """Run the simulate command; returns the exit code."""
    env = dict(os.environ)
    try:
        log = _log(args.log, args.strict)
        candidate = _config(args.config, "candidate", env)
        baseline_path = args.baseline
        if baseline_path is None and env.get("PROVIDER_ROUTER_CONFIG"):
            baseline_path = Path(env["PROVIDER_ROUTER_CONFIG"])
        baseline = _config(baseline_path, "baseline", env)
    except UsageError as error:
        print(f"provider-router simulate: error: {error}", file=sys.stderr)
        return 2
    ours, theirs = asyncio.run(_both(candidate, baseline, log, env, args.seed))
    if args.json:
        print(json.dumps(report.as_json(str(args.log), log, ours, theirs), indent=2))
    else:
        print(report.as_text(str(args.log), log, ours, theirs), end="")
    return 0
