"""A simulation's report: a table for people, a JSON document for CI, both with the diff."""

from __future__ import annotations

from collections.abc import Mapping

from provider_router.simulate.engine import NOT_SIMULATED, SimulationResult, Tally
from provider_router.simulate.records import RecordedLog
from provider_router.simulate.tenancy import TenantSpend

_SHOWN_MALFORMED = 10


def _moved(candidate: SimulationResult, baseline: SimulationResult) -> int:
    """Requests the candidate sends somewhere else than the baseline (rejections included)."""
    return sum(1 for c, b in zip(candidate.outcomes, baseline.outcomes, strict=True)
               if (c.target, c.rejection) != (b.target, b.rejection))


def _side(result: SimulationResult) -> dict[str, object]:
    return {
        "config": result.source,
        "routed": result.routed,
        "rejected": sum(result.rejections.values()),
        "cost_usd": round(result.cost_usd, 6),
        "targets": {name: {"requests": t.requests, "cost_usd": round(t.cost_usd, 6),
                           "unpriced": t.unpriced, "prompt_tokens": t.prompt_tokens,
                           "completion_tokens": t.completion_tokens}
                    for name, t in sorted(result.targets.items())},
        "rules": dict(sorted(result.rules.items())),
        "rejections": dict(sorted(result.rejections.items())),
        "rejected_lines": [o.line for o in result.outcomes if o.target is None],
        "tenants": {name: {"requests": t.requests, "rejected": t.rejected,
                           "cost_usd": round(t.cost_usd, 6), "unpriced": t.unpriced,
                           "days": {k.removeprefix("day:"): round(v, 6)
                                    for k, v in sorted(t.days.items())},
                           "months": {k.removeprefix("month:"): round(v, 6)
                                      for k, v in sorted(t.months.items())}}
                    for name, t in sorted(result.tenants.items())},
    }


def as_json(log_path: str, log: RecordedLog, candidate: SimulationResult,
            baseline: SimulationResult) -> dict[str, object]:
    """The whole report as a JSON-ready document."""
    return {
        "log": log_path,
        "requests": len(log.requests),
        "ignored_lines": log.ignored,
        "malformed_lines": [{"line": m.line, "problem": m.problem} for m in log.malformed],
        "usage": {"recorded": candidate.recorded_usage, "estimated": candidate.estimated_usage},
        "rate_limits_simulated": candidate.rate_limits_simulated,
        "tenant_policy_simulated": candidate.tenant_policy,
        "not_simulated": list(NOT_SIMULATED),
        "candidate": _side(candidate),
        "baseline": _side(baseline),
        "diff": {
            "cost_usd": round(candidate.cost_usd - baseline.cost_usd, 6),
            "rejected": sum(candidate.rejections.values()) - sum(baseline.rejections.values()),
            "moved": _moved(candidate, baseline),
        },
    }


def _usd(value: float) -> str:
    return f"{value:.6f}"


def _signed(value: float, money: bool = False) -> str:
    if money:
        return f"{value:+.6f}" if value else "0"
    return f"{value:+d}" if value else "0"


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                         strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _count_rows(title: str, candidate: Mapping[str, int], baseline: Mapping[str, int]
                ) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name in sorted(set(candidate) | set(baseline)):
        c, b = candidate.get(name, 0), baseline.get(name, 0)
        rows.append((f"{title}{name}", str(c), str(b), _signed(c - b), "", "", ""))
    return rows


def _target_rows(candidate: SimulationResult, baseline: SimulationResult
                 ) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name in sorted(set(candidate.targets) | set(baseline.targets)):
        c, b = candidate.targets.get(name, Tally()), baseline.targets.get(name, Tally())
        unpriced = f" (unpriced: {c.unpriced})" if c.unpriced else ""
        rows.append((name + unpriced, str(c.requests), str(b.requests),
                     _signed(c.requests - b.requests), _usd(c.cost_usd), _usd(b.cost_usd),
                     _signed(c.cost_usd - b.cost_usd, money=True)))
    return rows


def _tenant_rows(candidate: SimulationResult, baseline: SimulationResult
                 ) -> list[tuple[str, ...]]:
    """Requests served and spend per tenant, when either config has tenants (the JSON has
    them always)."""
    if not (candidate.tenant_policy or baseline.tenant_policy):
        return []
    rows: list[tuple[str, ...]] = []
    for name in sorted(set(candidate.tenants) | set(baseline.tenants)):
        c = candidate.tenants.get(name, TenantSpend())
        b = baseline.tenants.get(name, TenantSpend())
        rows.append((f"tenant {name}", str(c.requests), str(b.requests),
                     _signed(c.requests - b.requests), _usd(c.cost_usd), _usd(b.cost_usd),
                     _signed(c.cost_usd - b.cost_usd, money=True)))
    return rows


def as_text(log_path: str, log: RecordedLog, candidate: SimulationResult,
            baseline: SimulationResult) -> str:
    """The report as a table."""
    lines = [f"replayed {len(log.requests)} requests from {log_path}"
             f" ({len(log.malformed)} malformed lines skipped, {log.ignored} ignored)"]
    for bad in log.malformed[:_SHOWN_MALFORMED]:
        lines.append(f"  line {bad.line}: {bad.problem}")
    if len(log.malformed) > _SHOWN_MALFORMED:
        lines.append(f"  ... and {len(log.malformed) - _SHOWN_MALFORMED} more")
    lines += [f"candidate: {candidate.source}", f"baseline:  {baseline.source}", ""]
    rows = _target_rows(candidate, baseline)
    c_rej, b_rej = sum(candidate.rejections.values()), sum(baseline.rejections.values())
    rows.append(("total", str(candidate.routed), str(baseline.routed),
                 _signed(candidate.routed - baseline.routed), _usd(candidate.cost_usd),
                 _usd(baseline.cost_usd),
                 _signed(candidate.cost_usd - baseline.cost_usd, money=True)))
    rows.append(("rejected", str(c_rej), str(b_rej), _signed(c_rej - b_rej), "", "", ""))
    rows += _count_rows("  ", candidate.rejections, baseline.rejections)
    rows += _count_rows("rule ", candidate.rules, baseline.rules)
    rows += _tenant_rows(candidate, baseline)
    lines += _table(("provider/model", "requests", "baseline", "diff", "cost_usd",
                     "baseline_usd", "diff_usd"), rows)
    lines += ["", f"requests routed differently from the baseline: {_moved(candidate, baseline)}",
              f"usage: recorded for {candidate.recorded_usage} requests, estimated for "
              f"{candidate.estimated_usage} (prompt from the messages, completion from "
              f"max_tokens or [routing] default_completion_tokens)",
              "rate limits: " + ("simulated over the recorded timestamps"
                                 if candidate.rate_limits_simulated
                                 else "not simulated (no timestamps in the log)"),
              "tenants: " + ("the candidate's models, providers, rpm/tpm and day/month "
                             "budgets (budgets charged with the costs above, per UTC day "
                             "and month of `ts`)" if candidate.tenant_policy
                             else "none in the candidate config (no tenant policy applied)"),
              "not simulated: " + "; ".join(NOT_SIMULATED)]
    return "\n".join(lines) + "\n"
