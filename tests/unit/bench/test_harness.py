"""The benchmark harness's pure parts: percentiles, lag windows, goals, mock shapes, configs.

The harness itself is never run by the test suite; speed is measured in bench/, not asserted.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import configs, report
from bench.instructions import instructions_in, markdown_table
from bench.loop_lag import parse
from bench.mock_upstream import Shape, parse_shape
from bench.stats import median, per_request_ms, percentile, rate, summary_ms
from provider_router.config import load_config


def test_percentile_interpolates_like_numpy_linear() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_summary_median_and_rates() -> None:
    summary = summary_ms([0.001, 0.002, 0.003])
    assert summary["p50"] == pytest.approx(2.0)
    assert summary["max"] == pytest.approx(3.0)
    assert math.isnan(summary_ms([])["p99"])
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))
    assert per_request_ms(1.5, 1000) == pytest.approx(1.5)
    assert math.isnan(per_request_ms(1.0, 0))
    assert rate(50, 2.0) == 25.0 and rate(5, 0.0) == 0.0


EXPOSITION = """
# HELP provider_router_event_loop_lag_seconds How late
provider_router_event_loop_lag_seconds_bucket{{le="0.01"}} {a}
provider_router_event_loop_lag_seconds_bucket{{le="0.05"}} {b}
provider_router_event_loop_lag_seconds_bucket{{le="0.1"}} {c}
provider_router_event_loop_lag_seconds_bucket{{le="+Inf"}} {c}
provider_router_event_loop_lag_seconds_count {c}
provider_router_event_loop_lag_seconds_sum {s}
provider_router_event_loop_stalls_total {stalls}
"""


def test_lag_window_bounds_the_worst_stall_between_bucket_edges() -> None:
    before = parse(EXPOSITION.format(a=100, b=100, c=100, s=0.1, stalls=0))
    after = parse(EXPOSITION.format(a=180, b=199, c=200, s=0.3, stalls=1))
    window = after.since(before)
    assert window["ticks"] == 100
    assert window["stalls"] == 1
    assert (window["max_gt_ms"], window["max_le_ms"]) == (50.0, 100.0)
    assert window["mean_ms"] == pytest.approx(2.0)
    quiet = parse(EXPOSITION.format(a=300, b=300, c=300, s=0.5, stalls=1)).since(after)
    assert (quiet["max_gt_ms"], quiet["max_le_ms"]) == (0.0, 10.0)


def test_goals_scale_with_this_machines_floor() -> None:
    runs = {"floor_chat_c1": [{"added_p50_ms": 0.94}, {"added_p50_ms": 1.1},
                              {"added_p50_ms": 0.9}],
            "floor_chat_c64": [{"server_cpu_ms_per_req": 0.6}]}
    m = report.medians(runs)
    k = report.factors(m)
    assert k["latency"] == pytest.approx(2.0) and k["cpu"] == pytest.approx(2.0)
    goals = {(g.scenario, g.key): g for g in report.GOALS}
    assert report.scaled(goals["chat_c1", "added_p50_ms"], k) == pytest.approx(1.4)
    assert report.scaled(goals["chat_c64", "per_s"], k) == pytest.approx(1500)
    assert report.scaled(goals["hold", "errors"], k) == 0
    assert report.met(1.0, "<=", 1.4) == "yes" and report.met(900, ">=", 1500) == "no"
    assert report.met(math.nan, "<=", 1.0) == "n/a"
    derived = report.with_derived({"workers_1": {"server_cpu_ms_per_req": 1.0},
                                   "workers_2": {"server_cpu_ms_per_req": 1.1}})
    assert derived["workers"]["cpu_ratio"] == pytest.approx(1.1)
    assert "Chat c=1" in report.goals_table(m)


def test_mock_shapes_come_from_the_path() -> None:
    default = Shape(4, 0.0)
    assert parse_shape("/v1/chat/completions", default) == default
    assert parse_shape("/mock/20/0/v1/chat/completions", default) == Shape(20, 0.0)
    assert parse_shape("/mock/10/1000/v1/chat/completions", default) == Shape(10, 1.0)
    assert parse_shape("/mock/x/y/v1/chat/completions", default) == default


def test_generated_server_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(configs.server_config(configs.ServerShape(
        listen="127.0.0.1:7000", metrics_port=7001, mock_port=7002, extra_providers=3)))
    config = load_config(path, {})
    names = [p.name for p in config.providers]
    assert names[:3] == [configs.FAST, configs.CHUNKY, configs.SLOW]
    assert len(names) == 6
    slow = config.providers[2]
    assert slow.base_url.endswith("/mock/10/1000/v1") and slow.max_concurrent == 20_000
    assert config.metrics.port == 7001 and not config.autoregister


def test_an_exposition_without_the_probe_is_not_read_as_zero_lag() -> None:
    with pytest.raises(ValueError):
        parse("provider_router_rpcs_total 3.0\n")


def test_instruction_counts_are_read_from_a_callgrind_dump() -> None:
    dump = ("version: 1\ncreator: callgrind-3.19.0\npid: 42\ncmd:  python\npart: 1\n"
            "events: Ir\nfn=(1) main\n0 5\nsummary: 1234567\n\n\ntotals: 1234567\n")
    assert instructions_in(dump) == 1234567  # the summary repeats the total: counted once
    assert instructions_in("events: Ir\n") == 0


def test_instruction_table_has_a_row_per_call_and_a_column_per_side() -> None:
    table = markdown_table({"router": {"chat": 805_000.0, "route": 568_000.0},
                            "floor": {"chat": 797_000.0, "route": 350_000.0}},
                           ["chat", "route"], "M instr.", lambda count: f"{count / 1e6:.3f}")
    assert table.splitlines() == ["| call | router (M instr.) | floor (M instr.) |",
                                  "|---|---|---|",
                                  "| chat | 0.805 | 0.797 |",
                                  "| route | 0.568 | 0.350 |"]
