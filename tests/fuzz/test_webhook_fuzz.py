"""Property-based fuzzing of the webhook of a real ``sentinel run`` subprocess: arbitrary JSON,
alert-shaped payloads with odd unicode and huge label sets, raw bytes (invalid UTF-8), deep
nesting, wrong content types and credentials, 10,000 alerts in one payload. Every answer is one
the contract defines (200, 400, 401, 413, 503), the daemon stays healthy and ready, and its
memory stays bounded over the run (a bound on leaks, not a speed check)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.durability.support import rss_kib
from tests.helpers import TOKEN, write_config

DEFINED = {200, 400, 401, 413, 503}
MAX_BODY = 8 * 1024 * 1024
# Generous: the daemon's RSS may grow by this much over the whole run (allocator arenas,
# caches); a leak of what each request carries would pass it within the run.
RSS_GROWTH_LIMIT_KIB = 256 * 1024
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    host: str
    port: int

    def post(
        self, body: bytes, *, content_type: str | None = "application/json", auth: bool = True
    ) -> int:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        if auth:
            headers["Authorization"] = f"Bearer {TOKEN}"
        return self.request("POST", "/webhook/alertmanager", body, headers)[0]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """``sentinel run`` with a model that is not there (routed alerts end analysis_failed)."""
    directory = tmp_path_factory.mktemp("fuzz")
    write_config(
        directory,
        overrides={"server": {"max_body_bytes": MAX_BODY}, "dispatcher": {"queue_size": 1000}},
    )
    log = directory / "sentinel.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mcp_sentinel",
                "run",
                "--config",
                str(directory / "config.yaml"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, "NO_COLOR": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        while (
            found := re.search(r"listening on http://(127\.0\.0\.1):(\d+)", log.read_text())
        ) is None:
            assert process.poll() is None, f"sentinel run exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"sentinel run did not listen:\n{log.read_text()}"
            time.sleep(0.05)
        yield Daemon(process, found.group(1), int(found.group(2)))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


# -- strategies ----------------------------------------------------------------------------

odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40
) | st.sampled_from(["", "\u0000", "\u202e\u0644\u0627", "e\u0301", "\U0001f525" * 30, "\ufeff"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(odd_text, inner, max_size=5),
    max_leaves=40,
)
VALID_TIMES = ["2026-11-22T03:33:20.362Z", "0001-01-01T00:00:00Z", "2026-11-22T04:00:00+02:00"]
timestamps = st.sampled_from([*VALID_TIMES, "not a time", "", "2026-13-40T99:99:99Z"])


@st.composite
def alert_payloads(draw: st.DrawFn, *, valid: bool) -> dict[str, Any]:
    """Alertmanager-shaped payloads with odd unicode and sometimes huge label sets: valid ones
    (the contract takes them: 200, or 503 when they do not fit) or mangled ones."""
    count = draw(st.integers(min_value=1 if valid else 0, max_value=5))
    huge = draw(st.booleans())
    statuses = ["firing", "resolved"] if valid else ["firing", "resolved", "pending", ""]
    times = st.sampled_from(VALID_TIMES) if valid else timestamps
    alerts = []
    for _ in range(count):
        labels = draw(st.dictionaries(odd_text, odd_text, max_size=8))
        if huge:
            labels.update({f"label_{i}": "v" * 20 for i in range(2000)})
        alerts.append(
            {
                "status": draw(st.sampled_from(statuses)),
                "labels": labels,
                "annotations": draw(st.dictionaries(odd_text, odd_text, max_size=4)),
                "startsAt": draw(times),
                "endsAt": draw(times),
                "generatorURL": draw(odd_text),
                "fingerprint": draw(odd_text.filter(bool) if valid else odd_text),
            }
        )
    payload: dict[str, Any] = {
        "version": "4" if valid else draw(st.sampled_from(["4", "3", 4])),
        "groupKey": draw(odd_text),
        "status": draw(st.sampled_from(["firing", "resolved"])),
        "receiver": draw(odd_text),
        "alerts": alerts,
    }
    if draw(st.booleans()):
        payload["extra"] = draw(json_values)  # unknown fields are ignored
    return payload


content_types = st.sampled_from(
    [
        "application/json",
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/json; charset=latin-1",
        "\u00e9/\u00e9",
    ]
)


def big_payload(count: int, service: str) -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "Storm", "service": service},
        "annotations": {"summary": "one of many"},
        "startsAt": "2026-11-22T03:33:20.362Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    alerts = [{**alert, "fingerprint": f"{service}-{index:05d}"} for index in range(count)]
    payload = {"version": "4", "groupKey": "storm", "status": "firing", "receiver": "r"}
    return json.dumps({**payload, "alerts": alerts}).encode()


def test_the_webhook_answers_only_defined_statuses_and_stays_healthy(daemon: Daemon) -> None:
    # Warm up (imports, caches, first allocations), then measure from here.
    assert daemon.post(b"{}") == 400
    baseline = rss_kib(daemon.process.pid)
    statuses: set[int] = set()

    @FUZZ
    @given(value=json_values, content_type=content_types)
    def arbitrary_json(value: Any, content_type: str | None) -> None:
        status = daemon.post(json.dumps(value).encode(), content_type=content_type)
        assert status in DEFINED
        statuses.add(status)

    @FUZZ
    @given(payload=alert_payloads(valid=True), content_type=content_types)
    def valid_alerts(payload: dict[str, Any], content_type: str | None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        status = daemon.post(body, content_type=content_type)  # any content type: it is JSON
        assert status in {200, 503}
        statuses.add(status)

    @FUZZ
    @given(payload=alert_payloads(valid=False), content_type=content_types, auth=st.booleans())
    def mangled_alerts(payload: dict[str, Any], content_type: str | None, auth: bool) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        status = daemon.post(body, content_type=content_type, auth=auth)
        assert status in DEFINED
        assert auth or status == 401
        statuses.add(status)

    @FUZZ
    @given(raw=st.binary(max_size=2000))
    def raw_bytes(raw: bytes) -> None:
        assert daemon.post(raw) in DEFINED

    arbitrary_json()
    valid_alerts()
    mangled_alerts()
    raw_bytes()
    assert daemon.post(b'{"alerts": "\xff\xfe invalid utf-8"}') == 400
    for depth in (100, 10_000, 200_000):
        assert daemon.post(b"[" * depth + b"]" * depth) in {400, 413}
        assert daemon.post(b'{"a":' * depth + b"1" + b"}" * depth) in {400, 413}
    # 10,000 alerts in one payload: unrouted ones are all taken; routed ones do not fit the
    # queue (1000) and are refused whole.
    assert daemon.post(big_payload(10_000, "nobody-routes-this")) == 200
    assert daemon.post(big_payload(10_000, "checkout")) == 503
    assert daemon.post(b"x" * (MAX_BODY + 1)) == 413
    assert {200, 400, 401}.issubset(statuses)

    assert daemon.request("GET", "/healthz")[0] == 200
    assert daemon.request("GET", "/readyz")[0] == 200
    assert daemon.process.poll() is None
    growth = rss_kib(daemon.process.pid) - baseline
    assert growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {growth} KiB over the fuzz run"
