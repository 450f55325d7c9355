"""CLI commands for tenants: hash-key (offline), usage and tenants (admin RPCs)."""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from provider_router.cli_client import _client as client_for
from provider_router.cli_client import _failed as failed
from provider_router.cli_client import to_json
from provider_router.errors import ConfigError
from provider_router.tenants import MIN_KEY_LENGTH, hash_key
from provider_router.v1 import router_pb2 as pb
from provider_router_client import RouterClient

M = TypeVar("M", bound=Message)


def _read_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("API key (not echoed): ").strip()
    return sys.stdin.readline().strip()


def hash_key_command(args: argparse.Namespace) -> int:
    """`provider-router hash-key`: the key_sha256 of a key read from stdin, or of a new one."""
    if args.generate:
        key = secrets.token_urlsafe(32)
        print(f"key:        {key}")
        print(f"key_sha256: {hash_key(key)}")
        return 0
    key = _read_key()
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError("API key", f"{len(key)} characters",
                          f"at least {MIN_KEY_LENGTH} random characters "
                          "(make one with --generate)")
    print(hash_key(key))
    return 0


def _money(value: float, budget: float | None = None) -> str:
    if budget is not None and budget <= 0:
        return "-"
    return f"${value:.4f}"


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_usage(report: pb.GetUsageResponse, lines: bool) -> None:
    """A table of spend and budgets per tenant, and optionally per provider model."""
    if not report.tenants:
        print("no tenants configured")
        return
    first = report.tenants[0]
    print(f"day {first.day} (UTC), month {first.month}")
    rows = [["TENANT", "TODAY", "DAY BUDGET", "LEFT", "MONTH", "MONTH BUDGET", "LEFT"]]
    for u in report.tenants:
        rows.append([u.tenant, _money(u.spent_day_usd), _money(u.budget_day_usd, u.budget_day_usd),
                     _money(u.remaining_day_usd, u.budget_day_usd), _money(u.spent_month_usd),
                     _money(u.budget_month_usd, u.budget_month_usd),
                     _money(u.remaining_month_usd, u.budget_month_usd)])
    _table(rows)
    if not lines:
        return
    print()
    detail = [["TENANT", "PROVIDER", "MODEL", "MONTH USD", "PROMPT", "COMPLETION", "CALLS"]]
    for u in report.tenants:
        detail += [[u.tenant, line.provider, line.model, f"{line.cost_usd:.4f}",
                    str(line.prompt_tokens), str(line.completion_tokens), str(line.requests)]
                   for line in u.month_lines]
    if len(detail) > 1:
        _table(detail)


def print_tenants(listing: pb.ListTenantsResponse) -> None:
    """A table of tenants and their limits."""
    if not listing.tenants:
        print("no tenants configured")
        return
    rows = [["TENANT", "KEYS", "MODELS", "PROVIDERS", "RPM", "TPM", "DAY USD", "MONTH USD"]]
    for t in listing.tenants:
        rows.append([t.name, str(t.key_count), ",".join(t.models) or "*",
                     ",".join(t.providers) or "*", str(t.rpm or "-"), str(t.tpm or "-"),
                     _money(t.budget_day_usd, t.budget_day_usd),
                     _money(t.budget_month_usd, t.budget_month_usd)])
    _table(rows)


def _show(args: argparse.Namespace, fetch: Callable[[RouterClient], M],
          show: Callable[[M], None]) -> int:
    """One admin RPC (honouring --tls/--ca/--cert), shown as JSON (--json) or by `show`."""
    with client_for(args) as client:
        try:
            answer = fetch(client)
        except grpc.RpcError as error:
            return failed(error)
    if args.json:
        print(json.dumps(to_json(answer), indent=2))
    else:
        show(answer)
    return 0


def usage(args: argparse.Namespace) -> int:
    """`provider-router usage [TENANT ...]`."""
    return _show(args, lambda client: client.get_usage(args.tenants, timeout=args.timeout),
                 lambda report: print_usage(report, args.lines))


def tenants(args: argparse.Namespace) -> int:
    """`provider-router tenants`."""
    return _show(args, lambda client: client.list_tenants(timeout=args.timeout), print_tenants)
