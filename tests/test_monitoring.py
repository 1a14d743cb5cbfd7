"""Monitoring: the metrics an operator alerts on, the shipped alert rules and the dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from archiver import __version__
from archiver.service import Service
from archiver.store import JobStore

from .conftest import make_config, running, wait_for

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"), "gauge": ("",)}
SESSION = "6914a3c0aa01bb02cc030001"


def promtool() -> str:
    """The promtool binary; missing is a failure under CI (it installs it), a skip elsewhere."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
    pytest.skip("promtool not installed (apt-get install prometheus)")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def exported_names(text: str) -> set[str]:
    """Every series name a query may use, from a /metrics render (also families with no sample yet)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def queried_names(expression: str) -> set[str]:
    return set(re.findall(r"\barchiver_[a-zA-Z0-9_]+", expression))


async def scrape(service: Service) -> str:
    assert service.health_server is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{service.health_server.port}/metrics") as resp:
            return await resp.text()


async def test_operator_metrics_are_exported_with_values(tmp_path, simulator):
    """build_info, the oldest pending job's age and the inbox outcomes, from a running daemon."""
    sim = await simulator()
    # A window that is closed today keeps the job pending, so its age can be read.
    config = make_config(tmp_path, sim, observability__http_listen="127.0.0.1:0", daemon__window="0 0 1 1 *")
    with JobStore.open_in(config.daemon.state_dir) as store:
        store.enqueue([("session", SESSION)], now=time.time() - 7200)
    inbox = config.daemon.inbox_dir
    inbox.mkdir(parents=True)
    (inbox / "good.txt").write_text("6914a3c0aa01bb02cc030002\n")
    (inbox / "junk.json").write_bytes(b"\x00\x01 not json")
    os.symlink("/etc/passwd", inbox / "link.txt")
    async with running(config) as service:
        values = samples(await scrape(service))
        assert values[("archiver_build_info", (("version", __version__),))] == 1
        assert 7100 < values[("archiver_oldest_pending_age_seconds", ())] < 7400
        assert values[("archiver_inbox_files_total", (("outcome", "processed"),))] == 1
        assert values[("archiver_inbox_files_total", (("outcome", "rejected"),))] == 1
        assert values[("archiver_inbox_files_total", (("outcome", "quarantined"),))] == 1
        # The series alerts rely on exist from the first scrape, at 0.
        for reason in ("disk", "outage", "rate_limit"):
            assert values[("archiver_downloads_paused", (("reason", reason),))] == 0


async def test_oldest_pending_age_is_zero_when_the_queue_is_empty(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim, observability__http_listen="127.0.0.1:0")
    async with running(config) as service:
        assert samples(await scrape(service))[("archiver_oldest_pending_age_seconds", ())] == 0


async def test_dashboard_and_alerts_query_only_exported_metrics(tmp_path, simulator):
    sim = await simulator()
    config = make_config(tmp_path, sim, observability__http_listen="127.0.0.1:0")
    async with running(config) as service:
        exported = exported_names(await scrape(service))
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = set().union(*(queried_names(e) for e in expressions))
    assert len(used) >= 10
    assert not used - exported, f"queried but not exported: {sorted(used - exported)}"
    # Every panel's queries are non-empty and unique ids keep Grafana happy.
    assert all(expressions) and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"], capture_output=True, text=True, cwd=MONITORING
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_the_issue_asks_for_is_shipped() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    wanted = {
        "ArchiverStalled": "archiver_last_success_timestamp_seconds",
        "ArchiverVendorDown": "archiver_vendor_up",
        "ArchiverDiskPaused": 'archiver_downloads_paused{reason="disk"}',
        "ArchiverFailedSessions": 'state="failed"',
        "ArchiverOldestPendingTooOld": "archiver_oldest_pending_age_seconds",
        "ArchiverInboxFilesRejected": "archiver_inbox_files_total",
        "ArchiverSessionsAtRisk": "archiver_sessions_at_risk",
    }
    for name, fragment in wanted.items():
        assert fragment in alerts[name]
    tested = (MONITORING / "alerts.test.yml").read_text()
    assert all(f"alertname: {name}" in tested for name in alerts)
