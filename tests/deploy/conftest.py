"""Fixtures of the deploy tests: the compose file, the Grafana dashboard and the alert rules.

The project runs pytest with --import-mode=importlib, so test modules cannot import this file;
they get what they need from the fixtures below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "recsys.json"
ALERT_RULES_FILE = PROMETHEUS_DIR / "alert_rules.yml"

# Grafana's built-in interval variables, replaced by fixed windows when a query is sent to Prometheus
# directly (a scrape interval of 1-5 s makes these the values Grafana would pick for a short range).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL target of a dashboard panel."""

    panel: str
    ref_id: str
    expr: str

    def promql(self) -> str:
        """The expression with Grafana variables substituted, ready for Prometheus's HTTP API."""
        expr = self.expr
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        return expr


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard, including those nested in (collapsed) rows."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def load_dashboard_queries(path: Path = DASHBOARD_FILE) -> list[PanelQuery]:
    """Every PromQL target of every panel of a Grafana dashboard JSON file."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return [
        PanelQuery(panel=panel["title"], ref_id=target.get("refId", "?"), expr=target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def load_alert_rules(path: Path = ALERT_RULES_FILE) -> list[AlertRule]:
    """Every rule (alerting or recording) of a Prometheus rule file."""
    return [
        AlertRule(name=rule.get("alert") or rule["record"], expr=rule["expr"])
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def all_dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return dashboard_panels(dashboard)


@pytest.fixture(scope="session")
def dashboard_queries() -> list[PanelQuery]:
    queries = load_dashboard_queries()
    assert queries, "the dashboard has no PromQL targets"
    return queries


@pytest.fixture(scope="session")
def alert_rules() -> list[AlertRule]:
    rules = load_alert_rules()
    assert rules, "no alert rules found"
    return rules
