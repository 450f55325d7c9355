"""The simulate subcommand's options, kept apart so building the CLI parser (which `serve`
does too) imports nothing of the simulator."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulate subcommand's options."""
    parser.add_argument("--log", type=Path, required=True,
                        help="JSONL of recorded requests: access-log lines, OpenAI chat "
                             "bodies or Batch API lines")
    parser.add_argument("--config", type=Path, required=True,
                        help="the candidate TOML config to replay them through")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="the config to compare with (default: the one the server would "
                             "load: PROVIDER_ROUTER_CONFIG, else the built-in defaults)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 2) on the first malformed line instead of skipping it")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random strategies (weighted), so runs agree")
