"""Every input format replay reads, from the real captured payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_sentinel.replay.inputs import ReplayInputError, read_batches
from tests.conftest import FIXTURES


def test_webhook_payloads_and_directories() -> None:
    (batch,) = read_batches([FIXTURES / "webhook_firing_group_3_alerts.json"])
    assert len(batch.notifications) == 3
    assert {n.source for n in batch.notifications} == {"replay"}
    skipped: list[str] = []
    every = read_batches([FIXTURES], skipped)
    names = [Path(b.origin).name for b in every]
    assert names == sorted(names)  # directories replay in name order
    assert len(names) == 12
    # A file in a directory that holds no alerts is skipped and said, not fatal.
    (note,) = skipped
    assert "webhook_request_headers.json: not an Alertmanager webhook payload" in note


def test_capture_files_and_jsonl(tmp_path: Path) -> None:
    payload = json.loads((FIXTURES / "webhook_firing_single_alert.json").read_text())
    capture = {"received_at": "2026-11-22T03:33:20Z", "headers": {}, "payload": payload}
    (tmp_path / "a.json").write_text(json.dumps(capture))
    (tmp_path / "b.jsonl").write_text(json.dumps(payload) + "\n\n" + json.dumps(capture) + "\n")
    batches = read_batches([tmp_path])
    assert [b.origin.rsplit("/", 1)[-1] for b in batches] == ["a.json", "b.jsonl:1", "b.jsonl:3"]
    assert all(b.notifications[0].fingerprint == "8d746f6f305121f8" for b in batches)


def test_api_dumps_match_the_webhook_fingerprints() -> None:
    (am,) = read_batches([FIXTURES / "alertmanager_api_v2_alerts.json"])
    (groups,) = read_batches([FIXTURES / "alertmanager_api_v2_alerts_groups.json"])
    (prom,) = read_batches([FIXTURES / "prometheus_api_v1_alerts.json"])
    assert am.notifications and groups.notifications and prom.notifications
    am_fingerprints = {n.fingerprint for n in am.notifications}
    # Prometheus has no fingerprints: they are computed as Alertmanager does.
    assert {n.fingerprint for n in prom.notifications} & am_fingerprints


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"hello": 1}', "not an Alertmanager webhook payload"),
        ('{"version": "4", "alerts": [{"status": "firing"}]}', "alerts[0].labels: Field required"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReplayInputError, match=r"bad\.json") as caught:
        read_batches([path])
    assert message in str(caught.value)


def test_missing_path() -> None:
    with pytest.raises(ReplayInputError, match="no such file"):
        read_batches([Path("/nonexistent/alerts.json")])
