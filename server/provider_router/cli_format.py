"""Human-readable output of the CLI: tables, error details, stream aggregation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from provider_router.v1 import router_pb2 as pb


def _enum_name(enum: object, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()  # type: ignore[attr-defined]


def describe_rpc_error(error: grpc.RpcError) -> str:
    """The status code, message and every decoded detail of a failed call."""
    call = error if isinstance(error, grpc.Call) else None
    code = call.code().name if call else "UNKNOWN"
    lines = [f"error: {code}: {call.details() if call else error}"]
    status = rpc_status.from_call(call) if call else None
    details: list[Any] = list(status.details) if status else []
    for detail in details:
        lines.extend(_describe_detail(detail))
    return "\n".join(lines)


def _describe_detail(detail: Any) -> list[str]:
    kinds: tuple[tuple[type, str], ...] = (
        (error_details_pb2.ErrorInfo, "reason"), (error_details_pb2.BadRequest, "bad"),
        (error_details_pb2.RetryInfo, "retry"), (pb.AttemptsDetail, "attempts"))
    for cls, kind in kinds:
        message = cls()
        if detail.Is(message.DESCRIPTOR):
            detail.Unpack(message)
            return _describe(kind, message)
    return []


def _describe(kind: str, message: object) -> list[str]:
    if kind == "reason":
        facts = sorted(message.metadata.items())  # type: ignore[attr-defined]
        return [f"  reason: {message.reason}"] + [  # type: ignore[attr-defined]
            f"  {key}: {value}" for key, value in facts]
    if kind == "bad":
        return [f"  field {v.field}: {v.description}"
                for v in message.field_violations]  # type: ignore[attr-defined]
    if kind == "retry":
        delay = message.retry_delay.ToTimedelta().total_seconds()  # type: ignore[attr-defined]
        return [f"  retry after: {delay:.1f}s"]
    attempts: pb.AttemptsDetail = message  # type: ignore[assignment]
    delivered = attempts.delivered_deltas
    lines = [f"  delivered deltas: {delivered}"] if delivered else []
    for a in attempts.attempts:
        outcome = _enum_name(pb.AttemptOutcome, a.outcome, "ATTEMPT_OUTCOME_")
        status = f" http {a.status_code}" if a.status_code else ""
        lines.append(f"  attempt {a.provider}/{a.model}: {outcome}{status} {a.error}".rstrip())
    return lines


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def print_candidates(decision: pb.RouteResponse) -> None:
    """The candidates of a routing decision as a table."""
    rows = [["RANK", "PROVIDER", "MODEL", "SCORE", "STATUS"]]
    for c in decision.candidates:
        status = ("eligible" if c.eligible else
                  _enum_name(pb.ExclusionReason, c.exclusion_reason, "EXCLUSION_REASON_"))
        detail = f" ({c.detail})" if c.detail else ""
        rows.append([str(c.rank) if c.eligible else "-", c.provider, c.model,
                     f"{c.score:.4g}", status + detail])
    _table(rows)


def print_providers(listing: pb.ListProvidersResponse) -> None:
    """Providers as a table, with the env var to set for missing keys."""
    rows = [["NAME", "KIND", "MODELS", "ENABLED", "HEALTH", "BREAKER", "IN-FLIGHT", "LATENCY",
             "ERRORS", "NOTE"]]
    for info in listing.providers:
        spec, status = info.spec, info.status
        models = ",".join(m.name for m in spec.models[:3]) + ("…" if len(spec.models) > 3 else "")
        note = "MOCK: not a real model" if status.is_mock else status.unavailable_reason
        rows.append([
            spec.name, _enum_name(pb.ProviderKind, spec.kind, "PROVIDER_KIND_"), models,
            "yes" if spec.enabled else "no",
            _enum_name(pb.HealthState, status.health, "HEALTH_STATE_"),
            _enum_name(pb.BreakerState, status.breaker_state, "BREAKER_STATE_"),
            str(status.in_flight), f"{status.latency_ema_ms:.0f} ms",
            f"{status.error_rate:.0%}", note,
        ])
    _table(rows)


def stream_to_json(events: Iterable[pb.StreamChatResponse]) -> dict[str, object]:
    """A whole stream folded into the same JSON shape as `chat --no-stream --json`."""
    text: list[str] = []
    restarts: list[str] = []
    end = pb.StreamEnd()
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "delta":
            text.append(event.delta.text)
        elif kind == "restart":
            text.clear()  # the restart event means: discard what came before
            restarts.append(event.restart.reason)
        elif kind == "end":
            end = event.end
    body = json_format.MessageToDict(end, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    return {"provider": end.provider, "model": end.model, "content": "".join(text),
            "finish_reason": body["finish_reason"], "usage": body["usage"],
            "cost_usd": end.cost_usd if end.HasField("cost_usd") else None,
            "attempts": body["attempts"], "restarts": restarts}
