"""docker-compose.yml and the files it mounts: they exist, and the names and ports they use
for each other agree."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from mcp_sentinel.config import SentinelSettings, StdioMcpServer
from mcp_sentinel.toolsets.prometheus_server import TOOL_NAMES
from tests.conftest import REPO_ROOT

from .conftest import (
    DEPLOY,
    compose,
    env_file,
    flag,
    host_port,
    listen_port,
    load_yaml,
    service,
)

SERVICES = {"prometheus", "alertmanager", "sentinel", "otel-collector"}


def bind_mounts(name: str) -> list[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts (named volumes skipped)."""
    mounts = []
    for volume in service(name).get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((REPO_ROOT / source).resolve(), target))
    return mounts


def mounted(name: str, container_path: str) -> Path:
    """The host file a service sees at ``container_path`` (directly or inside a mounted dir)."""
    for source, target in bind_mounts(name):
        if container_path == target:
            return source
        if container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target.rstrip("/")) + 1 :]
    raise AssertionError(f"{name} has nothing mounted at {container_path}")


def secret_target(name: str, secret: str) -> str:
    for entry in service(name).get("secrets") or []:
        source = entry if isinstance(entry, str) else entry["source"]
        target = secret if isinstance(entry, str) else entry.get("target", secret)
        if source == secret:
            return target if target.startswith("/") else f"/run/secrets/{target}"
    raise AssertionError(f"{name} does not get the secret {secret}")


def test_the_four_services_and_their_named_volumes() -> None:
    document = compose()
    assert set(document["services"]) == SERVICES
    used = {
        str(volume).split(":")[0]
        for spec in document["services"].values()
        for volume in spec.get("volumes") or []
        if not str(volume).startswith((".", "/"))
    }
    assert used == set(document.get("volumes") or {})
    assert service("sentinel")["build"] == "."


def test_every_file_it_mounts_exists() -> None:
    for name in SERVICES:
        for source, target in bind_mounts(name):
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(REPO_ROOT)
    for name, spec in compose().get("secrets", {}).items():
        assert (REPO_ROOT / spec["file"]).is_file(), f"secret {name}: {spec['file']} missing"
    for env in service("sentinel").get("env_file") or []:
        assert (REPO_ROOT / env).is_file(), env
    assert (REPO_ROOT / "Dockerfile").is_file()
    # What the services read from their mounts: Prometheus's rule files too.
    prometheus_config = mounted("prometheus", "/etc/prometheus/prometheus.yml")
    for pattern in load_yaml(prometheus_config)["rule_files"]:
        assert list(prometheus_config.parent.glob(pattern)), f"no rule file matches {pattern}"


def test_alertmanager_sends_to_the_sentinel_service_with_its_token(
    settings: SentinelSettings,
) -> None:
    config = load_yaml(mounted("alertmanager", "/etc/alertmanager/alertmanager.yml"))
    receiver_names = {receiver["name"] for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receiver_names
    (receiver,) = config["receivers"]
    (webhook,) = receiver["webhook_configs"]
    url = urlsplit(webhook["url"])
    assert (url.hostname, url.port) == ("sentinel", settings.server.port)
    assert url.path == "/webhook/alertmanager"
    assert webhook["send_resolved"] is True
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"].lower() == "bearer"
    assert authorization["credentials_file"] == secret_target("alertmanager", "webhook-token")
    # The token Alertmanager sends is the one sentinel checks.
    secret_file = REPO_ROOT / compose()["secrets"]["webhook-token"]["file"]
    token = secret_file.read_text(encoding="utf-8").strip()
    assert settings.server.auth.type == "bearer"
    assert settings.server.auth.token.get_secret_value() == token
    env = env_file(REPO_ROOT / service("sentinel")["env_file"][0])
    assert env["SENTINEL_WEBHOOK_TOKEN"] == token
    # A repeat notification must still be recognised as a duplicate.
    repeat = config["route"]["repeat_interval"]
    assert repeat.endswith("h")
    assert settings.dispatcher.dedupe_ttl_seconds > int(repeat[:-1]) * 3600


def test_prometheus_sends_alerts_to_the_alertmanager_service() -> None:
    config = load_yaml(mounted("prometheus", "/etc/prometheus/prometheus.yml"))
    alertmanager_port = listen_port(service("alertmanager")["command"], 9093)
    targets = [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == [f"alertmanager:{alertmanager_port}"]
    # Alertmanager's own flags: no gossip listener in a single-instance demo.
    assert flag(service("alertmanager")["command"], "--cluster.listen-address") == ""


def test_prometheus_scrapes_the_services_where_they_listen(settings: SentinelSettings) -> None:
    config = load_yaml(mounted("prometheus", "/etc/prometheus/prometheus.yml"))
    scraped = {
        job["job_name"]: static["targets"]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
    }
    assert scraped["sentinel"] == [f"sentinel:{settings.server.port}"]
    assert scraped["alertmanager"] == [
        f"alertmanager:{listen_port(service('alertmanager')['command'], 9093)}"
    ]


def test_the_toolset_points_at_the_prometheus_service(settings: SentinelSettings) -> None:
    server = settings.mcp_servers["prometheus"]
    assert isinstance(server, StdioMcpServer)
    assert server.command == "sentinel" and server.args[:2] == ["mcp", "prometheus"]
    url = server.args[server.args.index("--url") + 1]
    port = listen_port(service("prometheus")["command"], 9090)
    assert host_port(url) == ("prometheus", port)
    assert set(server.read_only_tools) == set(TOOL_NAMES)
    assert all(list(card.tools) == ["prometheus"] for card in settings.incident_cards)


def test_sentinel_traces_go_to_the_collector(settings: SentinelSettings) -> None:
    tracing = settings.telemetry.tracing
    assert tracing.enabled
    host, port = host_port(tracing.otlp_endpoint)
    assert host == "otel-collector"
    collector = service("otel-collector")
    config_path = flag(collector["command"], "--config")
    assert config_path is not None
    config = load_yaml(mounted("otel-collector", config_path))
    protocol = "http" if tracing.protocol == "http/protobuf" else "grpc"
    receiver = config["receivers"]["otlp"]["protocols"][protocol]
    assert host_port(receiver["endpoint"])[1] == port
    assert str(port) in {str(exposed) for exposed in collector.get("expose") or []}
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"] and pipeline["exporters"] == ["debug"]
    assert set(pipeline.get("processors") or []) <= set(config.get("processors") or {})


def test_sentinel_writes_only_to_its_volume(settings: SentinelSettings) -> None:
    data_mounts = [
        str(volume).split(":")[1]
        for volume in service("sentinel")["volumes"]
        if not str(volume).startswith((".", "/"))
    ]
    assert data_mounts == ["/var/lib/sentinel"]
    for path in (
        settings.sinks.audit.path,
        settings.sinks.dead_letter_dir,
        settings.dispatcher.sqlite_path,
    ):
        assert Path(path).is_relative_to("/var/lib/sentinel"), path


def test_published_ports_are_loopback_and_match_what_listens(settings: SentinelSettings) -> None:
    listening = {
        "prometheus": listen_port(service("prometheus")["command"], 9090),
        "alertmanager": listen_port(service("alertmanager")["command"], 9093),
        "sentinel": settings.server.port,
    }
    for name, port in listening.items():
        (published,) = service(name)["ports"]
        host_ip, host_side, container_side = str(published).split(":")
        assert host_ip == "127.0.0.1", f"{name} is published beyond loopback"
        assert int(container_side) == port, name
        assert int(host_side) == port, name
    environment = service("sentinel")["environment"]
    assert environment["SENTINEL_CONFIG"] == "/etc/sentinel/config.yaml"
    assert mounted("sentinel", environment["SENTINEL_CONFIG"]) == (
        DEPLOY / "sentinel" / "config.yaml"
    )
