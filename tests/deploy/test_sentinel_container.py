"""deploy/sentinel/config.yaml as the container uses it: it loads, passes ``sentinel check
--offline``, and the image's entrypoint command runs with it (adapted to loopback and port 0)
and answers /healthz and the image's HEALTHCHECK."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from click.testing import CliRunner

from mcp_sentinel.cli import main
from mcp_sentinel.config import SentinelSettings, load_settings
from tests.helpers import free_port

from .conftest import (
    IMAGE_DATA_DIR,
    arguments_of,
    exec_form,
    image_layout,
    sentinel_environment,
    stages,
)

LISTEN_WITHIN = 60.0
STOP_WITHIN = 60.0


def test_it_loads_with_the_environment_compose_gives(settings: SentinelSettings) -> None:
    assert settings.server.host == "0.0.0.0"
    assert settings.server.auth.type == "bearer"
    assert settings.openai.api_key is not None and settings.openai.api_key.get_secret_value() == ""
    assert settings.telemetry.tracing.enabled
    assert settings.dispatcher.default_card == "generic"
    assert {card.resource for card in settings.incident_cards} >= {"TargetDown", "generic"}


def test_sentinel_check_offline_passes(tmp_path: Path) -> None:
    config = image_layout(tmp_path)
    result = CliRunner().invoke(
        main, ["check", "--offline", "--config", str(config)], env=sentinel_environment()
    )
    assert result.exit_code == 0, result.stderr
    assert f"{config}: OK" in result.stdout
    assert "prometheus (stdio): not probed" in result.stdout


class OtlpStub:
    """Accepts OTLP/HTTP trace exports on loopback (answers 200), so tracing stays on."""

    def __init__(self) -> None:
        self.exports = 0
        self.url = ""

    async def traces(self, request: web.Request) -> web.Response:
        await request.read()
        self.exports += 1
        return web.Response(status=200, content_type="application/x-protobuf")


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpStub]:
    stub = OtlpStub()
    app = web.Application()
    app.router.add_post("/v1/traces", stub.traces)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stub.url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


def loopback_config(base: Path, collector_url: str) -> Path:
    """The image's config layout with the listener on 127.0.0.1:0, the data directory under
    ``base`` and traces to ``collector_url``; nothing else changed."""
    config_path = image_layout(base)
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["server"].update(host="127.0.0.1", port=0)
    data_dir = base / "data"
    data_dir.mkdir()

    def relocate(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(IMAGE_DATA_DIR):
            return str(data_dir) + value.removeprefix(IMAGE_DATA_DIR)
        if isinstance(value, dict):
            return {key: relocate(item) for key, item in value.items()}
        if isinstance(value, list):
            return [relocate(item) for item in value]
        return value

    data = relocate(data)
    data["telemetry"]["tracing"]["otlp_endpoint"] = collector_url
    config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config_path


def entrypoint_argv(config_path: Path) -> list[str]:
    """The image's ENTRYPOINT + CMD with the config path swapped for ``config_path``."""
    final = stages()[-1]
    (entrypoint,), (cmd,) = arguments_of(final, "ENTRYPOINT"), arguments_of(final, "CMD")
    argv = exec_form(entrypoint) + exec_form(cmd)
    argv[argv.index("--config") + 1] = str(config_path)
    executable = shutil.which(argv[0])
    # Under `uv run` the venv's `sentinel` is on PATH; otherwise run the same module.
    program = [executable] if executable else [sys.executable, "-m", "mcp_sentinel"]
    return [*program, *argv[1:]]


def healthcheck_argv(port: int) -> list[str]:
    """The image's HEALTHCHECK command aimed at ``port``."""
    (healthcheck,) = arguments_of(stages()[-1], "HEALTHCHECK")
    argv = exec_form(healthcheck.partition(" CMD ")[2])
    argv[-1] = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", argv[-1])
    return [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]


async def test_the_entrypoint_serves_healthz_with_the_deploy_config(
    tmp_path: Path, otlp: OtlpStub
) -> None:
    config_path = loopback_config(tmp_path, otlp.url)
    settings = load_settings(config_path, env=sentinel_environment())
    token = settings.server.auth.token.get_secret_value()  # type: ignore[union-attr]
    environment = {
        **os.environ,
        **sentinel_environment(),
        "SENTINEL_CONFIG": str(config_path),
        # Nothing listens there: the toolset starts without reaching Prometheus.
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "NO_COLOR": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *entrypoint_argv(config_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=tmp_path / "data",
    )
    log: list[str] = []
    try:
        assert process.stderr is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stderr.readline(), LISTEN_WITHIN)).decode()
            assert line, "sentinel run exited before listening:\n" + "".join(log)
            log.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
            url = found.group(1) if found else None
        port = int(url.rsplit(":", 1)[1])
        async with aiohttp.ClientSession(base_url=url) as http:
            async with http.get("/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok"}
            # Bearer auth is on: no token, no entry.
            async with http.post("/webhook/alertmanager", json={}) as response:
                assert response.status == 401
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post("/webhook/alertmanager", json={}, headers=headers) as response:
                assert response.status == 400  # authenticated; the empty body is malformed
        check = await asyncio.create_subprocess_exec(*healthcheck_argv(port))
        assert await asyncio.wait_for(check.wait(), LISTEN_WITHIN) == 0
        process.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(process.communicate(), STOP_WITHIN)
        log.append(rest.decode(errors="replace"))
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    assert process.returncode == 0, "".join(log)
    assert token not in "".join(log)
