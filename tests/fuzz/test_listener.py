"""The listener against slow and idle clients (raw sockets), over TLS, and its security
defaults: authentication unless ``server.auth`` says ``none``, and a warning when an open
webhook listens beyond loopback."""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from mcp_sentinel.app import Sentinel
from mcp_sentinel.config import ServerSettings, load_settings
from mcp_sentinel.errors import ConfigError
from mcp_sentinel.http_server import HttpServer
from tests.helpers import AUTH, TOKEN, write_config
from tests.sinks.support import captured_logs

TIMEOUTS = {"read_timeout_seconds": 1, "keepalive_timeout_seconds": 1}


@asynccontextmanager
async def listening(tmp_path: Path, **server: Any) -> AsyncIterator[Sentinel]:
    settings = write_config(tmp_path, overrides={"server": {**TIMEOUTS, **server}})
    async with Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()) as s:
        yield s


def request_head(content_length: int) -> bytes:
    return (
        "POST /webhook/alertmanager HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n"
        f"X-Padding: {'a' * 200}\r\n"
        "\r\n"
    ).encode()


async def dropped_while_trickling(port: int, data: bytes, pause: float) -> bool:
    """Send ``data`` one byte per ``pause``; True when the server closes the connection (or
    answers) before all of it was sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index in range(len(data)):
            try:
                writer.write(data[index : index + 1])
                await writer.drain()
            except ConnectionError:
                return True
            try:
                await asyncio.wait_for(reader.read(1024), pause)
            except TimeoutError:
                continue
            return True  # EOF (b"") or an error answer: either way the server gave up on us
        return False
    finally:
        writer.close()


async def test_a_client_trickling_its_headers_is_disconnected(tmp_path: Path) -> None:
    async with listening(tmp_path) as sentinel:
        assert sentinel.http is not None
        # ~300 bytes at 0.05 s each is 15 s: far past the 1 s limit.
        assert await dropped_while_trickling(sentinel.http.port, request_head(10), 0.05)


async def test_a_client_that_stalls_mid_body_gets_408_and_is_disconnected(tmp_path: Path) -> None:
    async with listening(tmp_path) as sentinel:
        assert sentinel.http is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", sentinel.http.port)
        try:
            writer.write(request_head(1000) + b'{"version": "4", "alerts": [')
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 15)  # to EOF: the server closes
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive within 1s" in answer


async def test_an_idle_connection_is_closed(tmp_path: Path) -> None:
    async with listening(tmp_path) as sentinel:
        assert sentinel.http is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", sentinel.http.port)
        try:
            assert await asyncio.wait_for(reader.read(), 15) == b""
        finally:
            writer.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key: with ``cryptography`` if installed, else the
    ``openssl`` command, else the test is skipped."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(
            [
                *(
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ),
                *("-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


async def test_tls_listener(tmp_path: Path, fixture_bytes: Callable[[str], bytes]) -> None:
    cert, key = self_signed_certificate(tmp_path)
    # Relative to the config file, like every path in it.
    tls = {"tls": {"cert_file": cert.name, "key_file": key.name}}
    trusting = ssl.create_default_context(cafile=str(cert))
    async with listening(tmp_path, **tls) as sentinel, aiohttp.ClientSession() as http:
        assert sentinel.url.startswith("https://127.0.0.1:")
        async with http.get(f"{sentinel.url}/healthz", ssl=trusting) as r:
            assert r.status == 200
        body = fixture_bytes("webhook_firing_single_alert")
        async with http.post(
            f"{sentinel.url}/webhook/alertmanager", data=body, headers=AUTH, ssl=trusting
        ) as r:
            assert r.status == 200
        plain = sentinel.url.replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{plain}/healthz") as r:
                await r.read()


async def test_a_bad_tls_file_is_a_clear_start_error(tmp_path: Path) -> None:
    settings = write_config(
        tmp_path, overrides={"server": {"tls": {"cert_file": "nope.pem", "key_file": "k.pem"}}}
    )
    with pytest.raises(Exception, match=r"server\.tls: cannot load .*nope\.pem"):
        async with Sentinel(settings, registry=CollectorRegistry(), console_stream=io.StringIO()):
            pass


def test_server_auth_is_required_and_says_how_to_opt_out(tmp_path: Path) -> None:
    write_config(tmp_path)
    path = tmp_path / "config.yaml"
    config = yaml.safe_load(path.read_text())
    del config["server"]["auth"]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    (problem,) = caught.value.problems
    assert problem.location == "server.auth"
    assert "{type: none}" in problem.message and "bearer" in problem.message

    del config["server"]  # no server section at all: the same problem
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"server\.auth: required"):
        load_settings(path, env={})

    config["server"] = {"auth": {"type": "none"}}  # opting out, explicitly
    path.write_text(yaml.safe_dump(config))
    assert load_settings(path, env={}).server.auth.type == "none"


@pytest.mark.parametrize(
    ("host", "auth", "warned"),
    [
        ("0.0.0.0", {"type": "none"}, True),
        ("::", {"type": "none"}, True),
        ("127.0.0.1", {"type": "none"}, False),
        ("localhost", {"type": "none"}, False),
        ("0.0.0.0", {"type": "bearer", "token": "t"}, False),
    ],
)
def test_listening_beyond_loopback_without_auth_is_warned_about(
    host: str, auth: dict[str, str], warned: bool
) -> None:
    server = ServerSettings.model_validate({"host": host, "port": 0, "auth": auth})
    with captured_logs() as logs:
        HttpServer.from_settings(web.Application(), server)  # built, never bound
    assert any("anyone who can reach port" in line for line in logs) is warned
