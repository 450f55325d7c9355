"""deploy/grafana/provider-router.json: valid, laid out, and built only on metrics that exist.

The metric names of every query are checked against a real scrape of the server taken after
unary, streaming, failover and failing calls (test_metrics_scrape.traffic_scrape); each
query's PromQL is checked by promtool (as recording rules) with Grafana's variables filled in.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Fakes, StartRouter
from tests.integration.test_metrics_scrape import PROMTOOL, traffic_scrape

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "provider-router.json"
METRIC = re.compile(r"\b(provider_router_[a-z0-9_]+)\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "summary": ("", "_sum", "_count")}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$job": ".*"}


def dashboard() -> dict[str, Any]:
    """The dashboard, parsed."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"]
            for target in panel.get("targets", ())]


def exposed_names(scrape: str) -> set[str]:
    """Every series name the scrape declares: its samples' and each family's by type."""
    names: set[str] = set()
    for family in text_string_to_metric_families(scrape):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def test_the_dashboard_is_laid_out_and_every_panel_queries_something() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] == "Provider Router"
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), \
                panel["title"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("requests", "errors", "overhead", "first token", "breakers", "spend"):
        assert topic in titles, topic


async def test_every_query_names_only_metrics_a_real_scrape_has(
        start_router: StartRouter, fakes: Fakes) -> None:
    _, scrape = await traffic_scrape(start_router, fakes)
    exposed = exposed_names(scrape)
    used = {name for _, expr in queries() for name in METRIC.findall(expr)}
    assert used, "the dashboard queries no provider_router metric"
    assert used <= exposed, sorted(used - exposed)
    # The families with samples in this scrape include the core ones the dashboard leans on.
    sampled = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}
    assert {"provider_router_rpcs_total", "provider_router_overhead_seconds_bucket",
            "provider_router_time_to_first_token_seconds_bucket",
            "provider_router_cost_usd_total"} <= sampled


@pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                    reason="promtool is not installed (apt-get install prometheus)")
async def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, (_, expr) in enumerate(queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert PROMTOOL is not None
    checked = await asyncio.to_thread(subprocess.run, [PROMTOOL, "check", "rules", str(path)],
                                      capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
