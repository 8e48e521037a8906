"""The Prometheus API client against a local aiohttp server that answers like Prometheus (and
like the things that stand in front of it: an auth proxy, a wrong URL, a hung backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from mcp_sentinel.cli import main
from mcp_sentinel.toolsets.prometheus_client import (
    PrometheusAuth,
    PrometheusClient,
    PrometheusError,
    display_url,
)
from tests.helpers import free_port

HUNG_FOR_AT_MOST = 10.0


class FakePrometheus:
    """Records each request; answers by path (see ``handle``)."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        path = request.path
        if path == "/api/v1/query" and request.query.get("query") == "hang":
            # Hangs until the test ends (bounded): the client must give up first.
            await asyncio.wait_for(self.release.wait(), HUNG_FOR_AT_MOST)
        if path == "/api/v1/query" and request.query.get("query") == "bad":
            body = {"status": "error", "errorType": "execution", "error": "bad regexp"}
            return web.json_response(body, status=422)
        if path == "/api/v1/query":
            data = {"resultType": "vector", "result": []}
            return web.json_response({"status": "success", "data": data, "warnings": ["w1"]})
        if path.startswith("/guarded/"):
            return web.Response(status=401, text="Unauthorized")
        if path.startswith("/api/v1/label/"):
            return web.json_response({"status": "success", "data": ["a"]})
        return web.Response(status=404, text="<html><body>404 page not found</body></html>")


@pytest.fixture
async def fake() -> AsyncIterator[FakePrometheus]:
    server = FakePrometheus()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


async def test_success_returns_data_and_warnings(fake: FakePrometheus) -> None:
    async with PrometheusClient(fake.url) as client:
        result = await client.query("up", 1714564800.5)
    assert result.data == {"resultType": "vector", "result": []}
    assert result.warnings == ("w1",)
    (request,) = fake.requests
    assert request.query["time"] == "1714564800.5"
    assert request.query["timeout"] == "15000ms"  # Prometheus stops evaluating when we give up
    assert "Authorization" not in request.headers


async def test_repeated_match_and_a_quoted_label(fake: FakePrometheus) -> None:
    async with PrometheusClient(fake.url + "/") as client:
        await client.label_values("job", ['up{job="a"}', "process_start_time_seconds"])
    (request,) = fake.requests
    assert request.path == "/api/v1/label/job/values"
    assert request.query.getall("match[]") == ['up{job="a"}', "process_start_time_seconds"]


async def test_prometheus_errors_keep_their_type_and_text(fake: FakePrometheus) -> None:
    async with PrometheusClient(fake.url) as client:
        with pytest.raises(PrometheusError) as caught:
            await client.query("bad")
    assert str(caught.value) == "Prometheus rejected the request (execution): bad regexp"


async def test_a_wrong_url_says_so(fake: FakePrometheus) -> None:
    async with PrometheusClient(fake.url + "/not-prometheus") as client:
        with pytest.raises(PrometheusError) as caught:
            await client.targets()
    assert str(caught.value) == (
        f"Prometheus at {fake.url}/not-prometheus answered /api/v1/targets with HTTP 404 "
        "Not Found and no API response (is the URL the Prometheus base URL?): "
        "<html><body>404 page not found</body></html>"
    )


async def test_refused_credentials(fake: FakePrometheus, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    auth = PrometheusAuth.from_files(bearer_token_file=token)
    assert auth is not None and "s3cret" not in repr(auth)
    async with PrometheusClient(fake.url + "/guarded", auth=auth) as client:
        with pytest.raises(PrometheusError) as caught:
            await client.alerts()
    assert "refused the credentials: HTTP 401 Unauthorized" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert fake.requests[0].headers["Authorization"] == "Bearer s3cret-token"


async def test_basic_auth_from_a_password_file(fake: FakePrometheus, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("pa55word\n")
    auth = PrometheusAuth.from_files(basic_auth_user="sentinel", basic_auth_password_file=password)
    async with PrometheusClient(fake.url, auth=auth) as client:
        await client.query("up")
    # base64("sentinel:pa55word")
    assert fake.requests[0].headers["Authorization"] == "Basic c2VudGluZWw6cGE1NXdvcmQ="


async def test_timeout_is_a_clear_error(fake: FakePrometheus) -> None:
    async with PrometheusClient(fake.url, timeout_seconds=0.3) as client:
        with pytest.raises(PrometheusError) as caught:
            await client.query("hang")
    assert str(caught.value) == f"Prometheus at {fake.url} did not answer within 0.3s"


async def test_unreachable_names_the_url_without_credentials() -> None:
    port = free_port()  # nothing listens there
    async with PrometheusClient(f"http://user:pw-secret@127.0.0.1:{port}/prom/") as client:
        with pytest.raises(PrometheusError) as caught:
            await client.rules()
    message = str(caught.value)
    assert message.startswith(f"Prometheus at http://127.0.0.1:{port}/prom is not reachable (")
    assert "pw-secret" not in message and "user" not in message


def test_display_url() -> None:
    assert display_url("https://u:p@prom.example:9090/x/?a=b#f") == "https://prom.example:9090/x"
    assert display_url("http://[::1]:9090") == "http://[::1]:9090"


def test_auth_from_files_rejects_mixtures_and_empty_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert PrometheusAuth.from_files() is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"bearer_token_file": empty, "basic_auth_user": "u"}, "not both"),
        ({"basic_auth_user": "u"}, "both a user and a password file"),
        ({"basic_auth_password_file": empty}, "both a user and a password file"),
        ({"bearer_token_file": empty}, "is empty"),
        ({"bearer_token_file": tmp_path / "missing"}, "cannot read the bearer token file"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            PrometheusAuth.from_files(**kwargs)


def test_cli_usage_errors(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    runner = CliRunner()
    result = runner.invoke(main, ["mcp", "prometheus", "--url", "prometheus:9090"])
    assert result.exit_code == 2
    assert "must start with http:// or https://" in result.stderr
    argv = ["mcp", "prometheus", "--url", "http://127.0.0.1:9090", "--bearer-token-file"]
    result = runner.invoke(main, [*argv, str(token), "--basic-auth-user", "u"])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = runner.invoke(main, ["mcp", "prometheus", "--help"])
    assert result.exit_code == 0
    for flag in ("--url", "--http", "--host", "--port", "--timeout", "--max-series"):
        assert flag in result.stdout
    for flag in ("--max-chars", "--bearer-token-file", "--basic-auth-user"):
        assert flag in result.stdout
    assert "--basic-auth-password-file" in result.stdout
