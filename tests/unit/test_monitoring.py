"""The Grafana dashboard queries only series the code exports, with labels they carry, and the
compose stack's Prometheus and Grafana are wired to the processes that export them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import api.app
import consumers.runner

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(
    (ROOT / "docker-compose.yml").read_text())["services"]
DASHBOARD: dict[str, Any] = json.loads(
    (DEPLOY / "grafana" / "dashboards" / "mqgate.json").read_text())
PROMETHEUS: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())

# what PromQL spells like a metric name but is not one
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                      "and", "or", "unless", "offset", "inf", "nan"})
TARGET_LABELS = frozenset({"instance", "job"})  # added by Prometheus to every scraped series
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression uses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables such as $__rate_interval
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors
    labels: set[str] = set()

    def grouping(match: re.Match[str]) -> str:
        labels.update(re.findall(r"\w+", match.group(1)))
        return " "

    def matchers(match: re.Match[str]) -> str:
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", match.group(1)))
        return " "

    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                  grouping, text)
    text = re.sub(r"\{([^}]*)\}", matchers, text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        called = text[match.end():].lstrip().startswith("(")  # a function or an aggregation
        if not called and match.group().lower() not in KEYWORDS:
            names.add(match.group())
    return names, labels


def exported() -> dict[str, set[str]]:
    """Every series name the running code registers, with the labels it carries.

    The api and the dispatcher process modules are imported, so every metric either defines is
    in prometheus_client's default registry."""
    assert api.app and consumers.runner
    labelnames: dict[str, set[str]] = {}
    # label names are kept by prometheus_client's metric classes only, and privately
    for collector in set(REGISTRY._names_to_collectors.values()):
        if isinstance(collector, MetricWrapperBase):
            for family in collector.describe():
                labelnames[family.name] = set(collector._labelnames)
    series: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            extra = {"le"} if suffix == "_bucket" else set()
            series[family.name + suffix] = labelnames.get(family.name, set()) | extra
    return series


def queries() -> Iterator[tuple[str, str]]:
    """(panel title and query id, expr) of every query of the dashboard, rows' panels
    included, and of its template variables."""
    panels = list(DASHBOARD["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield f"{panel['title']} {target['refId']}", target["expr"]
    for variable in DASHBOARD.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            # label_values(series, label) asks what group by (label) (series) does
            values = re.fullmatch(r"label_values\((?:(.+),)?\s*(\w+)\s*\)", query.strip())
            if values:
                query = f"group by ({values.group(2)}) ({values.group(1) or 'up'})"
            yield f"variable {variable['name']}", query


QUERIES = dict(queries())


def test_the_promql_reader_tells_series_from_functions_and_labels() -> None:
    names, labels = promql_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{status=~"5..",x!="{"}'
        '[$__rate_interval]))) / on (route) group_left sum(b_total offset 5m) > bool 0')
    assert names == {"a_bucket", "b_total"}
    assert labels == {"le", "route", "status", "x"}


def test_the_dashboard_has_queries_and_the_panels_the_operator_needs() -> None:
    assert len(QUERIES) >= 10
    assert len(QUERIES) == len(list(queries())), "two queries of one panel share a refId"
    everything = " ".join(QUERIES.values())
    for series in ("mqgate_api_requests_total", "mqgate_api_request_duration_seconds_bucket",
                   "mqgate_api_time_to_first_token_seconds_bucket", "mqgate_queue_depth",
                   "mqgate_dispatcher_jobs_in_flight", "mqgate_dispatcher_worker_errors_total",
                   "mqgate_api_cancellations_total", "mqgate_cache_lookups_total"):
        assert series in everything


@pytest.mark.parametrize("panel", sorted(QUERIES))
def test_every_series_a_panel_queries_is_exported(panel: str) -> None:
    expr = QUERIES[panel]
    series = exported()
    names, labels = promql_names(expr)
    assert names, expr
    unknown = names - set(series)
    assert not unknown, f"{panel}: {sorted(unknown)} not exported by mqgate"
    carried = set().union(*(series[name] for name in names)) | TARGET_LABELS
    assert labels <= carried, f"{panel}: labels {sorted(labels - carried)} on no series"


def test_the_alerts_in_the_operations_guide_query_exported_series() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    alerts = guide[guide.index("## What to alert on"):]
    exprs = [e for e in re.findall(r"`([^`]+)`", alerts) if "mqgate_" in e]
    assert len(exprs) >= 5
    series = exported()
    for expr in exprs:
        names, labels = promql_names(expr)
        assert names and names <= set(series), expr
        assert labels <= set().union(*(series[name] for name in names)) | TARGET_LABELS, expr


def test_every_panel_reads_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    host, _, port = source["url"].removeprefix("http://").partition(":")
    assert host in SERVICES
    assert f"127.0.0.1:{port}:{port}" in SERVICES[host]["ports"]
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"]


def mounts(service: str) -> dict[Path, str]:
    """Host path to container path of a service's bind mounts."""
    found = {}
    for volume in SERVICES[service]["volumes"]:
        host, container = str(volume).split(":")[:2]
        found[(ROOT / host).resolve()] = container
    return found


def test_grafana_loads_the_dashboard_and_its_provisioning() -> None:
    grafana = mounts("grafana")
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert grafana[provisioning.resolve()] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "mqgate.yml").read_text())[
        "providers"]
    assert grafana[(DEPLOY / "grafana" / "dashboards").resolve()] == provider["options"]["path"]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/mqgate.json"
    assert SERVICES["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    prometheus = mounts("prometheus")
    assert prometheus[(DEPLOY / "prometheus" / "prometheus.yml").resolve()] == (
        "/etc/prometheus/prometheus.yml")


def test_prometheus_scrapes_every_api_and_dispatcher_replica_where_they_serve_metrics() -> None:
    scraped = {}
    for job in PROMETHEUS["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for discovery in job["dns_sd_configs"]:
            assert discovery["type"] == "A"  # every replica's address
            for name in discovery["names"]:
                scraped[name] = discovery["port"]
    api_command = SERVICES["api"]["command"]
    assert scraped["api"] == int(api_command[api_command.index("--port") + 1])
    dispatcher = SERVICES["dispatcher"]["environment"]
    assert scraped["dispatcher"] == int(dispatcher["MQGATE_METRICS_PORT"])
    assert dispatcher["MQGATE_METRICS_HOST"] == "0.0.0.0"
    assert set(scraped) == {"api", "dispatcher"}
