"""`provider-router simulate`: the log reader, the replay and the report, through main().

Each test writes its log and configs to tmp_path and runs the command as a user would
(main() in-process, one as a real subprocess), reading what it prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from provider_router import domain as d
from provider_router.cli import main
from provider_router.simulate.records import BadLine, parse_line

PROVIDERS = """
[autoregister]
enabled = false

[[providers]]
name = "openai"
kind = "openai"
api_key_env = "SIM_OPENAI_KEY"
capabilities = ["chat", "streaming", "tools", "vision"]
OPENAI_EXTRA
[[providers.models]]
name = "gpt-4o"
input_per_mtok = 2.5
output_per_mtok = 10.0
[[providers.models]]
name = "gpt-4o-mini"
input_per_mtok = 0.15
output_per_mtok = 0.6
capabilities = ["chat", "streaming"]

[[providers]]
name = "anthropic"
kind = "anthropic"
api_key_env = "SIM_ANTHROPIC_KEY"
[[providers.models]]
name = "claude-sonnet-4-5"
input_per_mtok = 3.0
output_per_mtok = 15.0
"""

ROUTING = """
[routing]
strategy = "failover"
failover_order = ["openai", "anthropic"]

[routing.aliases]
chat = ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"]
"""

RULE = """
[[routing.rules]]
name = "batch-to-mini"
conditions = { tenant = "batch" }
provider = "openai"
model = "gpt-4o-mini"
"""


def _config(tmp_path: Path, name: str, rule: bool = False, openai_extra: str = "",
            tenants: str = "") -> Path:
    path = tmp_path / name
    text = ROUTING + (RULE if rule else "") + PROVIDERS + tenants
    path.write_text(text.replace("OPENAI_EXTRA", openai_extra))
    return path


def _access(ts: float, tenant: str, prompt: int, completion: int, method: str = "Chat",
            model: str = "chat") -> str:
    return json.dumps({"ts": ts, "type": "access", "request_id": f"r{ts}", "method": method,
                       "tenant": tenant, "status": "OK", "latency_ms": 900.0, "attempts": 1,
                       "provider": "openai", "model": model, "input_tokens": prompt,
                       "output_tokens": completion, "cost_usd": 0.01})


def _body(text: str, **extra: object) -> str:
    return json.dumps({"model": "chat", "messages": [{"role": "user", "content": text}],
                       **extra})


def _log(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert isinstance(report, dict)
    return report


def test_a_rule_moves_requests_and_the_cost_diff_says_by_how_much(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, _access(1.0, "web", 1000, 100), _access(2.0, "batch", 1000, 100),
               _access(3.0, "batch", 2000, 200))
    report = _json(capsys, "--log", str(log), "--config", str(_config(tmp_path, "c.toml", True)),
                   "--baseline", str(_config(tmp_path, "b.toml")))
    candidate, baseline = report["candidate"], report["baseline"]
    assert isinstance(candidate, dict) and isinstance(baseline, dict)
    assert candidate["targets"] == {
        "openai/gpt-4o": {"requests": 1, "cost_usd": 0.0035, "unpriced": 0,
                          "prompt_tokens": 1000, "completion_tokens": 100},
        "openai/gpt-4o-mini": {"requests": 2, "cost_usd": 0.00063, "unpriced": 0,
                               "prompt_tokens": 3000, "completion_tokens": 300}}
    assert baseline["targets"] == {
        "openai/gpt-4o": {"requests": 3, "cost_usd": 0.014, "unpriced": 0,
                          "prompt_tokens": 4000, "completion_tokens": 400}}
    assert candidate["rules"] == {"batch-to-mini": 2} and baseline["rules"] == {}
    assert report["diff"] == {"cost_usd": -0.00987, "rejected": 0, "moved": 2}
    assert report["usage"] == {"recorded": 3, "estimated": 0}


def test_the_table_shows_targets_rules_and_the_diff(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, _access(1.0, "web", 1000, 100), _access(2.0, "batch", 1000, 100))
    code, out, _ = _run(capsys, "--log", str(log), "--config",
                        str(_config(tmp_path, "c.toml", True)), "--baseline",
                        str(_config(tmp_path, "b.toml")))
    assert code == 0
    rows = {line.split()[0] + (" " + line.split()[1] if line.startswith("rule") else ""):
            line.split()[1:] for line in out.splitlines() if line and line[0] != " "}
    assert rows["openai/gpt-4o"][:3] == ["1", "2", "-1"]
    assert rows["openai/gpt-4o-mini"][:3] == ["1", "0", "+1"]
    assert rows["rule batch-to-mini"][1:] == ["1", "0", "+1"]
    assert rows["total"][:3] == ["2", "2", "0"]
    assert "requests routed differently from the baseline: 1" in out
    assert "rate limits: simulated over the recorded timestamps" in out
    assert "tenants: none in the candidate config (no tenant policy applied)" in out
    assert "tenant web" not in out  # no tenant rows without tenants configured
    assert "not simulated: concurrency limits" in out and "budget" not in out.split(
        "not simulated:")[1]


def test_rate_limits_are_simulated_over_recorded_timestamps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2 rpm at openai: of four requests within a minute, two fail over to anthropic; the
    # fifth, a minute later, fits again.
    log = _log(tmp_path, *[_access(float(t), "web", 100, 10) for t in (0, 1, 2, 3, 61)])
    limited = _config(tmp_path, "c.toml", openai_extra="rate_limit_rpm = 2")
    report = _json(capsys, "--log", str(log), "--config", str(limited), "--baseline",
                   str(_config(tmp_path, "b.toml")))
    candidate = report["candidate"]
    assert isinstance(candidate, dict)
    requests = {k: v["requests"] for k, v in candidate["targets"].items()}
    assert requests == {"openai/gpt-4o": 3, "anthropic/claude-sonnet-4-5": 2}
    assert report["rate_limits_simulated"] is True


def test_a_request_every_target_has_no_room_for_is_rejected_rate_limited(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Only openai serves gpt-4o, at 1 rpm: the second request within the minute has nowhere
    # to go.
    log = _log(tmp_path, *[_access(float(t), "web", 100, 10, model="gpt-4o") for t in (0, 1)])
    limited = _config(tmp_path, "c.toml", openai_extra="rate_limit_rpm = 1")
    report = _json(capsys, "--log", str(log), "--config", str(limited), "--baseline",
                   str(_config(tmp_path, "b.toml")))
    candidate = report["candidate"]
    assert isinstance(candidate, dict)
    assert candidate["rejections"] == {"rate_limited": 1}
    assert candidate["rejected_lines"] == [2]
    assert report["diff"] == {"cost_usd": pytest.approx(-(100 * 2.5 + 10 * 10.0) / 1e6),
                              "rejected": 1, "moved": 1}


def test_requests_no_candidate_can_serve_are_reported_rejected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    log = _log(tmp_path, _body("call a tool", model="gpt-4o-mini", tools=[tool]),
               _body("hi", model="gpt-4o-mini"), _body("hi", model="no-such-model"))
    report = _json(capsys, "--log", str(log), "--config", str(_config(tmp_path, "c.toml")),
                   "--baseline", str(_config(tmp_path, "b.toml")))
    candidate = report["candidate"]
    assert isinstance(candidate, dict)
    assert candidate["rejections"] == {"no candidate: missing_capability": 1}
    assert candidate["rejected_lines"] == [1]
    # An unknown model goes to the default (the highest-priority provider's first model).
    assert candidate["routed"] == 2
    assert report["usage"] == {"recorded": 0, "estimated": 2}


def test_openai_bodies_and_batch_lines_are_estimated_from_tokens(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = json.dumps({"custom_id": "j1", "method": "POST", "url": "/v1/chat/completions",
                        "body": json.loads(_body("x" * 400, max_tokens=100))})
    log = _log(tmp_path, _body("x" * 400, max_tokens=100), batch)
    report = _json(capsys, "--log", str(log), "--config", str(_config(tmp_path, "c.toml")),
                   "--baseline", str(_config(tmp_path, "b.toml")))
    candidate = report["candidate"]
    assert isinstance(candidate, dict)
    # 400 characters = 100 tokens + 4 per message; 100 completion tokens (max_tokens).
    assert candidate["targets"]["openai/gpt-4o"] == {
        "requests": 2, "cost_usd": 2 * (104 * 2.5 + 100 * 10.0) / 1e6, "unpriced": 0,
        "prompt_tokens": 208, "completion_tokens": 200}
    assert report["usage"] == {"recorded": 0, "estimated": 2}


def test_malformed_lines_are_skipped_and_named(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, _body("fine"), '{"model": "chat", "messages": [', "[1, 2]",
               json.dumps({"model": "chat", "messages": [{"role": "robot", "content": "x"}]}),
               _access(1.0, "web", 10, 10, method="ListProviders"))
    code, out, _ = _run(capsys, "--log", str(log), "--config", str(_config(tmp_path, "c.toml")),
                        "--baseline", str(_config(tmp_path, "b.toml")))
    assert code == 0
    assert "replayed 1 requests from" in out and "(3 malformed lines skipped, 1 ignored)" in out
    assert "  line 2: not JSON" in out
    assert "  line 3: not a JSON object" in out
    assert "  line 4: messages[0].role 'robot' is not a chat role" in out


def test_strict_fails_on_the_first_malformed_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, _body("fine"), "not json at all")
    code, out, err = _run(capsys, "--log", str(log), "--config",
                          str(_config(tmp_path, "c.toml")), "--strict")
    assert code == 2 and out == ""
    assert f"--log {log}: line 2: not JSON" in err


@pytest.mark.parametrize(("setup", "message"), [
    ("missing_log", "no such file"),
    ("empty_log", "no chat requests to replay"),
    ("bad_config", "candidate config"),
    ("missing_baseline", "baseline config"),
])
def test_user_mistakes_exit_2_with_a_message(setup: str, message: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, _body("fine"))
    config = _config(tmp_path, "c.toml")
    argv = ["--log", str(log), "--config", str(config)]
    if setup == "missing_log":
        argv[1] = str(tmp_path / "absent.jsonl")
    elif setup == "empty_log":
        log.write_text("\n" + _access(1.0, "", 0, 0, method="Route") + "\n")
    elif setup == "bad_config":
        config.write_text('[routing]\nstrategy = "fastest"\n')
    else:
        argv += ["--baseline", str(tmp_path / "absent.toml")]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("provider-router simulate: error: ") and message in err
    assert "Traceback" not in err
    if setup == "bad_config":
        assert "routing.strategy" in err


def test_the_default_baseline_is_the_config_the_server_would_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_ROUTER_CONFIG", str(_config(tmp_path, "server.toml")))
    log = _log(tmp_path, _access(1.0, "batch", 100, 10))
    report = _json(capsys, "--log", str(log), "--config", str(_config(tmp_path, "c.toml", True)))
    baseline = report["baseline"]
    assert isinstance(baseline, dict)
    assert baseline["config"] == str(tmp_path / "server.toml")
    assert report["diff"] == {"cost_usd": pytest.approx(-(100 * 2.35 + 10 * 9.4) / 1e6),
                              "rejected": 0, "moved": 1}


def test_simulate_runs_as_a_command(tmp_path: Path) -> None:
    log = _log(tmp_path, _access(1.0, "batch", 100, 10))
    result = subprocess.run(
        [sys.executable, "-m", "provider_router", "simulate", "--log", str(log), "--config",
         str(_config(tmp_path, "c.toml", True)), "--baseline", str(_config(tmp_path, "b.toml")),
         "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["candidate"]["rules"] == {"batch-to-mini": 1}


def test_parse_line_shapes() -> None:
    access = parse_line(1, _access(5.0, "acme", 40, 7, method="StreamChat", model="gpt-4o"))
    assert access is not None and access.at == 5.0 and access.request.stream
    assert access.usage == d.Usage(40, 7, 47)
    assert access.request.routing.model == "gpt-4o"
    assert access.request.routing.attributes == {"tenant": "acme"}
    body = parse_line(2, _body("hi", temperature=0.2, stop="END", metadata={"tenant": "t"},
                               response_format={"type": "json_object"}))
    assert body is not None and body.usage is None and body.at is None
    assert body.request.params.temperature == 0.2 and body.request.params.stop == ("END",)
    assert body.request.routing.capabilities == frozenset({d.Capability.JSON})
    assert body.request.routing.attributes == {"tenant": "t"}
    with pytest.raises(BadLine, match="`max_tokens` is not a non-negative number"):
        parse_line(3, _body("hi", max_tokens="lots"))


# --- tenants ----------------------------------------------------------------------------------

DAY = 86_400.0


def _tenant(name: str, **limits: object) -> str:
    lines = [f"\n[[tenants]]\nname = {json.dumps(name)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in limits.items()]
    return "\n".join(lines) + "\n"


def _side(report: dict[str, object], name: str) -> dict[str, object]:
    side = report[name]
    assert isinstance(side, dict)
    return side


def test_a_tenant_over_its_daily_budget_is_rejected_from_the_crossing_request_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each request costs $0.0035 at gpt-4o: spend before requests 1-4 is 0, .0035, .007,
    # .0105; the budget is checked before the call, so the fourth is rejected, not the third.
    lines = [_access(10.0 * i, "acme", 1000, 100) for i in range(1, 7)]
    lines.append(_access(DAY + 10.0, "acme", 1000, 100))  # the next UTC day: a fresh budget
    lines.append(_access(70.0, "other", 1000, 100))  # another tenant is not affected
    log = _log(tmp_path, *lines)
    tenants = _tenant("acme", budget_usd_day=0.01) + _tenant("other")
    report = _json(capsys, "--log", str(log), "--config",
                   str(_config(tmp_path, "c.toml", tenants=tenants)),
                   "--baseline", str(_config(tmp_path, "b.toml")))
    candidate, baseline = _side(report, "candidate"), _side(report, "baseline")
    assert candidate["rejections"] == {"budget_exceeded": 3}
    assert candidate["rejected_lines"] == [4, 5, 6]
    assert candidate["tenants"] == {
        "acme": {"requests": 4, "rejected": 3, "cost_usd": 0.014, "unpriced": 0,
                 "days": {"1970-01-01": 0.0105, "1970-01-02": 0.0035},
                 "months": {"1970-01": 0.014}},
        "other": {"requests": 1, "rejected": 0, "cost_usd": 0.0035, "unpriced": 0,
                  "days": {"1970-01-01": 0.0035}, "months": {"1970-01": 0.0035}}}
    # The baseline has no tenants: everything is served, its spend under the names logged.
    assert baseline["rejections"] == {}
    acme = baseline["tenants"]
    assert isinstance(acme, dict) and acme["acme"]["requests"] == 7
    assert report["diff"] == {"cost_usd": -0.0105, "rejected": 3, "moved": 3}


def test_the_table_shows_a_budget_change_against_the_baseline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, *[_access(10.0 * i, "acme", 1000, 100) for i in range(1, 6)])
    # The baseline's month budget is spent after 2 requests, the candidate's after 4.
    code, out, _ = _run(
        capsys, "--log", str(log),
        "--config", str(_config(tmp_path, "c.toml",
                                tenants=_tenant("acme", budget_usd_month=0.014))),
        "--baseline", str(_config(tmp_path, "b.toml",
                                  tenants=_tenant("acme", budget_usd_month=0.007))))
    assert code == 0
    # Table cells are at least two spaces apart; names may hold one ("tenant acme").
    rows = {cells[0]: cells[1:] for cells in
            (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())}
    assert rows["rejected"] == ["1", "3", "-2"]
    assert rows["budget_exceeded"] == ["1", "3", "-2"]
    assert rows["tenant acme"] == ["4", "2", "+2", "0.014000", "0.007000", "+0.007000"]
    assert "tenants: the candidate's models, providers, rpm/tpm and day/month budgets" in out


def test_a_model_or_provider_the_tenant_may_not_use_is_rejected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path,
               _access(1.0, "acme", 1000, 100),  # the chat alias: not in acme's models
               _access(2.0, "acme", 1000, 100, model="openai/gpt-4o-mini"),
               _access(3.0, "acme", 1000, 100, model="anthropic/claude-sonnet-4-5"),
               _body("hi", metadata={"tenant": "acme"}, model="gpt-4o-mini"),
               _body("hi", user="acme", model="openai/gpt-4o"),
               _access(4.0, "web", 1000, 100))
    tenants = _tenant("acme", models=["gpt-4o-mini", "claude-*"], providers=["openai"])
    report = _json(capsys, "--log", str(log), "--config",
                   str(_config(tmp_path, "c.toml", tenants=tenants)),
                   "--baseline", str(_config(tmp_path, "b.toml")))
    candidate = _side(report, "candidate")
    assert candidate["rejections"] == {"model_not_allowed": 2, "provider_not_allowed": 1}
    assert candidate["rejected_lines"] == [1, 3, 5]
    assert candidate["targets"] == {
        "openai/gpt-4o": {"requests": 1, "cost_usd": 0.0035, "unpriced": 0,
                          "prompt_tokens": 1000, "completion_tokens": 100},
        "openai/gpt-4o-mini": {"requests": 2, "cost_usd": 0.000364, "unpriced": 0,
                               "prompt_tokens": 1005, "completion_tokens": 356}}
    assert report["diff"] == {"cost_usd": -0.010572, "rejected": 3, "moved": 3}


def test_a_tenant_over_its_rpm_is_rejected_tenant_rate_limited(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2 rpm refills one request every 30 s: the third within seconds is over, one at 40 s fits.
    log = _log(tmp_path, *[_access(ts, "acme", 1000, 100) for ts in (1.0, 2.0, 3.0, 40.0)],
               _access(3.5, "web", 1000, 100))
    report = _json(capsys, "--log", str(log), "--config",
                   str(_config(tmp_path, "c.toml", tenants=_tenant("acme", rpm=2))),
                   "--baseline", str(_config(tmp_path, "b.toml")))
    candidate = _side(report, "candidate")
    assert candidate["rejections"] == {"tenant_rate_limited": 1}
    assert candidate["rejected_lines"] == [3]
    assert report["diff"] == {"cost_usd": -0.0035, "rejected": 1, "moved": 1}


def test_the_default_tenant_holds_requests_without_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path, _body("hi", model="openai/gpt-4o"),
               _body("hi", model="openai/gpt-4o", user="acme"))
    tenants = _tenant("default", models=["gpt-4o-mini"]) + _tenant("acme")
    report = _json(capsys, "--log", str(log), "--config",
                   str(_config(tmp_path, "c.toml", tenants=tenants)))
    candidate = _side(report, "candidate")
    assert candidate["rejections"] == {"model_not_allowed": 1}
    assert candidate["rejected_lines"] == [1]
    spend = candidate["tenants"]
    assert isinstance(spend, dict)
    assert (spend["default"]["rejected"], spend["acme"]["requests"]) == (1, 1)


def test_the_tenant_of_a_body_is_metadata_tenant_else_user() -> None:
    body = parse_line(1, _body("hi", user="u1", metadata={"tenant": "acme"}))
    assert body is not None and body.request.tenant == "acme"
    user = parse_line(1, _body("hi", user="u1"))
    assert user is not None and user.request.tenant == "u1"
    access = parse_line(1, _access(1.0, "web", 10, 1))
    assert access is not None and access.request.tenant == "web"
    none = parse_line(1, _body("hi"))
    assert none is not None and none.request.tenant == ""
