"""The ``watchers`` config section, ``WatcherSet``'s lifecycle, and a poller in the whole daemon."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.config import load_settings
from mcp_sentinel.errors import ConfigError
from mcp_sentinel.settings_base import BearerAuth, NoAuth
from mcp_sentinel.watchers.factory import WatcherSet, build_watchers
from mcp_sentinel.watchers.settings import WatchersSettings
from tests.conftest import FIXTURES, REPO_ROOT
from tests.fakes.openai_server import FakeOpenAI, FinalJSON
from tests.helpers import FINDING, audit_records, wait_for, write_config
from tests.watchers.alert_api import (
    ClosedIntake,
    FakeAlertApi,
    RecordingHandler,
    dispatching,
    fresh_metrics,
)
from tests.watchers.conftest import LogLines

DOCUMENTED = """
watchers:
  prometheus: {url: "http://prometheus:9090/", interval_seconds: 15, include_pending: false,
               investigate_existing: false, external_labels: {cluster: eu-1},
               auth: {type: bearer, token: "${PROM_TOKEN}"}, timeout_seconds: 5}
  alertmanager: {url: "http://alertmanager:9093", interval_seconds: 60}
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "config.yaml"
    if "server:" not in text:
        text = "server: {auth: {type: none}}\n" + text  # server.auth is required
    path.write_text(text)
    return load_settings(path, env=env or {})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def test_the_documented_keys_load(tmp_path: Path) -> None:
    settings = load(tmp_path, DOCUMENTED, env={"PROM_TOKEN": "tok-123"})
    prometheus, alertmanager = settings.watchers.prometheus, settings.watchers.alertmanager
    assert prometheus.url == "http://prometheus:9090"  # no trailing slash
    assert prometheus.external_labels == {"cluster": "eu-1"}
    assert isinstance(prometheus.auth, BearerAuth)
    assert prometheus.auth.token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(settings)
    assert (alertmanager.interval_seconds, alertmanager.timeout_seconds) == (60, 10)
    assert isinstance(alertmanager.auth, NoAuth)
    assert not alertmanager.investigate_existing


def test_both_pollers_are_off_without_the_section(tmp_path: Path) -> None:
    settings = load(tmp_path, "server: {port: 0, auth: {type: none}}\n")
    assert settings.watchers == WatchersSettings()
    assert build_watchers(settings.watchers, intake=ClosedIntake(), metrics=fresh_metrics()) == []


def test_an_environment_variable_overrides_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL__WATCHERS__PROMETHEUS__INTERVAL_SECONDS", "5")
    settings = load(tmp_path, DOCUMENTED, env={"PROM_TOKEN": "t"})
    assert settings.watchers.prometheus.interval_seconds == 5


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "prometheus: {url: 'http://p:9090', intervall_seconds: 5}",
            "watchers.prometheus.intervall_seconds: unknown key (check its spelling)",
        ),
        ("alertmanager: {url: 'http://am:pw@am:9093'}", "put credentials in auth, not in the URL"),
        ("alertmanager: {url: 'am:9093'}", "watchers.alertmanager.url: String should match"),
        ("prometheus: {url: 'http://p', interval_seconds: 0}", "watchers.prometheus.interval"),
        (
            "prometheus: {url: 'http://p', external_labels: {'bad-name': x}}",
            "not valid label names: bad-name",
        ),
        (
            "alertmanager: {url: 'http://am', auth: {type: bearer}}",
            "watchers.alertmanager.auth.token: Field required",
        ),
        ("alertmanager: {url: 'http://am', include_pending: true}", "unknown key"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, section: str, expected: str) -> None:
    found = problems(tmp_path, f"watchers:\n  {section}\n")
    assert any(expected in problem for problem in found), found


def test_the_commented_example_in_config_example_yaml_is_valid(tmp_path: Path) -> None:
    text = (REPO_ROOT / "config.example.yaml").read_text()
    match = re.search(r"^# watchers:\n((?:#.*\n)+)", text, re.MULTILINE)
    assert match, "config.example.yaml has no commented watchers: example"
    block = "watchers:\n" + "".join(
        line[2:] + "\n" for line in match.group(1).splitlines() if line.startswith("#  ")
    )
    settings = load(tmp_path, block, env={"PROMETHEUS_TOKEN": "t", "ALERTMANAGER_PASSWORD": "p"})
    assert settings.watchers.prometheus is not None and settings.watchers.alertmanager is not None
    watchers = build_watchers(settings.watchers, intake=ClosedIntake(), metrics=fresh_metrics())
    assert [watcher.name for watcher in watchers] == ["prometheus", "alertmanager"]


async def test_leaving_cancels_every_poller_cleanly() -> None:
    handler, metrics = RecordingHandler(), fresh_metrics()
    async with FakeAlertApi() as api, dispatching(handler, metrics) as dispatcher:
        settings = WatchersSettings.model_validate(
            {
                "prometheus": {"url": api.url, "interval_seconds": 0.02},
                "alertmanager": {"url": api.url, "interval_seconds": 0.02},
            }
        )
        async with WatcherSet(settings, intake=dispatcher, metrics=metrics) as watcher_set:
            await wait_for(
                lambda: (
                    len(api.requests_to("/api/v1/alerts")) >= 2
                    and len(api.requests_to("/api/v2/alerts")) >= 2
                ),
                what="both pollers to poll",
            )
        assert [task.get_name() for task in watcher_set.tasks] == [
            "sentinel-watcher-prometheus",
            "sentinel-watcher-alertmanager",
        ]
        assert all(task.cancelled() for task in watcher_set.tasks)
    async with WatcherSet(WatchersSettings(), intake=dispatcher, metrics=metrics) as empty:
        assert empty.tasks == ()


class CrashingOnce:
    """A watcher whose first run() has a bug; the second runs until cancelled."""

    name = "crashy"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("a bug")
        await asyncio.Event().wait()


async def test_a_watcher_that_crashes_is_logged_and_restarted(logs: LogLines) -> None:
    crashy = CrashingOnce()
    async with WatcherSet(
        WatchersSettings(),
        intake=ClosedIntake(),
        metrics=fresh_metrics(),
        watchers=[crashy],
        restart_delay_seconds=0,
    ):
        await wait_for(lambda: crashy.runs == 2, what="the restart")
    assert logs.matching("watcher crashy crashed; restarting it in 0s")


async def test_a_polled_alert_goes_the_whole_way_through_the_daemon(tmp_path: Path) -> None:
    """The daemon with watchers.prometheus: the polled alert is investigated and audited, its
    disappearance is audited as a resolution."""
    alert = copy.deepcopy(
        json.loads((FIXTURES / "prometheus_api_v1_alerts.json").read_bytes())["data"]["alerts"][0]
    )
    async with FakeAlertApi() as api, FakeOpenAI([FinalJSON(FINDING)]) as model:
        api.prometheus_alerts = [alert]
        watchers = {
            "prometheus": {
                "url": api.url,
                "interval_seconds": 0.05,
                "investigate_existing": True,
                "external_labels": {"cluster": "eu-1"},
            }
        }
        settings = write_config(
            tmp_path, model_url=model.base_url, overrides={"watchers": watchers}
        )
        audit = settings.resolve(settings.sinks.audit.path)
        async with (
            Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s,
            aiohttp.ClientSession(base_url=s.url) as http,
        ):
            await wait_for(lambda: len(audit_records(audit)) == 1, what="the investigation")
            api.prometheus_alerts = []
            await wait_for(lambda: len(audit_records(audit)) == 2, what="the resolution")
            async with http.get("/metrics") as response:
                metrics = await response.text()
    firing, resolved = (record["notification"] for record in audit_records(audit))
    assert firing["source"] == "prometheus" and firing["status"] == "firing"
    assert firing["labels"]["cluster"] == "eu-1"
    assert resolved["status"] == "resolved"
    assert resolved["fingerprint"] == firing["fingerprint"]
    assert resolved["starts_at"] == firing["starts_at"]
    assert 'sentinel_alerts_received_total{source="prometheus",status="firing"} 1.0' in metrics
    assert 'sentinel_alerts_received_total{source="prometheus",status="resolved"} 1.0' in metrics
