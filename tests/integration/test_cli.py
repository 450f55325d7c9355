"""The CLI's client commands, run as real subprocesses against an in-process server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.integration.conftest import StartRouter

CONFIG = """
[routing]
enabled = true
default_provider = "alpha"
default_model = "m-small"

[[routing.rules]]
name = "critical-to-beta"
priority = 100
conditions = { priority = "critical" }
provider = "beta"
model = "m-large"

[[routing.rules]]
name = "night-to-beta"
priority = 50
conditions = { hour_range = [0, 6] }
provider = "beta"
model = "m-small"

[[providers]]
name = "alpha"
kind = "mock"
models = [{ name = "m-small", input_per_mtok = 1.0, output_per_mtok = 2.0 }]
capabilities = ["chat", "streaming"]
priority = 10

[[providers]]
name = "beta"
kind = "mock"
models = ["m-small", { name = "m-large", input_per_mtok = 5.0, output_per_mtok = 10.0 }]
capabilities = ["chat", "streaming", "vision"]
"""

# Chat has no evaluation time: without the night rule its answer does not depend on the hour.
DAYTIME_CONFIG = CONFIG.replace("""[[routing.rules]]
name = "night-to-beta"
priority = 50
conditions = { hour_range = [0, 6] }
provider = "beta"
model = "m-small"
""", "")
assert DAYTIME_CONFIG != CONFIG


async def _cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_ROUTER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_route_json_puts_provider_and_model_on_top(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, out, _ = await _cli("route", "--target", router.target, "--attr", "priority=critical",
                              "--at", "2026-01-01T12:00:00Z", "--json")
    assert code == 0
    decision = json.loads(out)
    assert (decision["provider"], decision["model"]) == ("beta", "m-large")
    assert decision["rule"] == "critical-to-beta"


async def test_route_explain_prints_candidates(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, out, _ = await _cli("route", "--target", router.target, "--model", "m-small", "--cap", "vision",
                              "--at", "2026-01-01T12:00:00Z", "--explain")
    assert code == 0
    assert out.splitlines()[0].startswith("beta/m-small")
    assert "missing_capability" in out  # alpha lacks vision and says so
    assert "RANK" in out


async def test_route_at_evaluates_time_rules(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, out, _ = await _cli("route", "--target", router.target, "--at",
                              "2026-01-01T03:00:00Z", "--json")
    assert code == 0
    assert json.loads(out)["rule"] == "night-to-beta"


async def test_route_scenarios_pass_and_fail(start_router: StartRouter, tmp_path: Path) -> None:
    router = await start_router(CONFIG)
    scenarios = tmp_path / "scenarios.toml"
    scenarios.write_text("""
[[scenarios]]
name = "critical goes to beta large"
attributes = { priority = "critical" }
at = "2026-01-01T12:00:00Z"
expect_provider = "beta"
expect_model = "m-large"

[[scenarios]]
name = "daytime default"
at = "2026-01-01T12:00:00Z"
expect_provider = "alpha"
""")
    code, out, _ = await _cli("route", "--target", router.target, "--scenarios", str(scenarios))
    assert code == 0, out
    assert out.count("PASS") == 2
    scenarios.write_text(scenarios.read_text().replace('expect_provider = "alpha"',
                                                       'expect_provider = "beta"'))
    code, out, _ = await _cli("route", "--target", router.target, "--scenarios", str(scenarios))
    assert code == 1
    assert "FAIL  daytime default" in out


async def test_chat_json_has_the_documented_top_level(start_router: StartRouter) -> None:
    router = await start_router(DAYTIME_CONFIG)
    for extra in ((), ("--no-stream",)):
        code, out, _ = await _cli("chat", "hello there", "--target", router.target, "--json",
                                  *extra)
        assert code == 0
        body = json.loads(out)
        assert {"provider", "model", "content", "finish_reason", "usage", "cost_usd",
                "attempts"} <= body.keys()
        assert body["provider"] == "alpha" and "hello there" in body["content"]
        assert body["finish_reason"] == "FINISH_REASON_STOP"
        assert body["cost_usd"] > 0


async def test_chat_streams_text_and_prints_a_summary(start_router: StartRouter) -> None:
    router = await start_router(DAYTIME_CONFIG)
    code, out, err = await _cli("chat", "tell me more", "--target", router.target)
    assert code == 0
    assert "tell me more" in out
    assert "[alpha/m-small" in err and "tokens" in err and "ms]" in err


async def test_failed_call_prints_status_and_exits_nonzero(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, _, err = await _cli("chat", "hi", "--model", "ghost/none", "--target", router.target)
    assert code == 1
    assert "NOT_FOUND" in err and "reason:" in err
    assert "Traceback" not in err


async def test_usage_mistakes_exit_2(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, _, err = await _cli("route", "--target", router.target, "--attr", "novalue")
    assert code == 2 and "--attr" in err and "KEY=VALUE" in err
    code, _, err = await _cli("route", "--target", router.target, "--cap", "telepathy")
    assert code == 2 and "telepathy" in err
    code, _, err = await _cli("route", "--target", router.target, "--at", "yesterday")
    assert code == 2 and "ISO-8601" in err


async def test_providers_lists_every_provider(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, out, _ = await _cli("providers", "--target", router.target)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("NAME")
    assert [line.split()[0] for line in lines[1:]] == ["alpha", "beta"]
    assert "MOCK" in out


async def test_register_and_unregister_from_a_file(start_router: StartRouter,
                                                   tmp_path: Path) -> None:
    router = await start_router(CONFIG)
    spec = tmp_path / "gamma.toml"
    spec.write_text('name = "gamma"\nkind = "mock"\nmodels = ["g-1"]\n')
    code, out, _ = await _cli("register", str(spec), "--target", router.target)
    assert (code, out.strip()) == (0, "gamma: registered")
    code, out, _ = await _cli("register", str(spec), "--target", router.target)
    assert (code, out.strip()) == (0, "gamma: unchanged")
    code, out, _ = await _cli("unregister", "gamma", "--target", router.target)
    assert (code, out.strip()) == (0, "gamma: removed")
    spec.write_text('name = "Bad Name"\nkind = "mock"\nmodels = ["g-1"]\n')
    code, _, err = await _cli("register", str(spec), "--target", router.target)
    assert code == 2 and "name" in err


async def test_health_command_exit_codes(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, out, _ = await _cli("health", "--target", router.target)
    assert (code, out.strip()) == (0, "status: SERVING")
    await router.app.health.draining()
    code, out, _ = await _cli("health", "--target", router.target)
    assert (code, out.strip()) == (4, "status: NOT_SERVING")


async def test_fallbacks_are_named_per_request(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, out, _ = await _cli("route", "--target", router.target, "--model", "alpha/m-small",
                              "--fallback", "beta/m-large", "--fallback", "beta/m-small")
    assert code == 0, out
    assert out.splitlines()[0].startswith("alpha/m-small")
    assert "fallbacks: beta/m-large, beta/m-small" in out
    code, out, err = await _cli("chat", "hi", "--no-stream", "--json", "--target",
                                router.target, "--model", "alpha/m-small",
                                "--fallback", "beta/m-large")
    assert code == 0, err
    assert json.loads(out)["provider"] == "alpha"


async def test_fallback_mistakes_are_named(start_router: StartRouter) -> None:
    router = await start_router(CONFIG)
    code, _, err = await _cli("route", "--target", router.target, "--fallback", "beta")
    assert code == 2 and "--fallback" in err and "PROVIDER/MODEL" in err
    code, _, err = await _cli("route", "--target", router.target, "--fallback", "ghost/m-1")
    assert code == 1
    assert "INVALID_ARGUMENT" in err and "routing.fallbacks[0].provider" in err
    assert "Traceback" not in err
