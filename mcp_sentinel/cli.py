"""The ``sentinel`` command: parse arguments, load settings, call the app. No business logic."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from mcp_sentinel import __version__
from mcp_sentinel.config import (
    CONFIG_ENV_VAR,
    SentinelSettings,
    config_path_from,
    load_settings,
)
from mcp_sentinel.errors import ConfigError, ConfigProblem, SentinelError

_config_option = click.option(
    "--config",
    "config_path",
    metavar="PATH",
    default=None,
    help=f"Config file (default: ${CONFIG_ENV_VAR}, else config.yaml).",
)


def _load(config_path: str | None) -> SentinelSettings:
    path = config_path_from(config_path)
    try:
        return load_settings(path)
    except ConfigError as exc:
        _print_problems(path, exc.problems)
        sys.exit(1)


def _print_problems(path: Path, problems: list[ConfigProblem]) -> None:
    click.echo(f"{path}: {len(problems)} problem(s)", err=True)
    for problem in problems:
        click.echo(f"  {problem}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mcp_sentinel: investigates Alertmanager alerts with an LLM agent and MCP tools."""


@main.command()
@_config_option
@click.option("--host", default=None, help="Listen address (overrides server.host).")
@click.option("--port", type=int, default=None, help="Listen port (overrides server.port).")
@click.option(
    "--log-level",
    type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Overrides telemetry.log_level.",
)
@click.option(
    "--capture",
    "capture_dir",
    metavar="DIR",
    default=None,
    help="Write each accepted webhook payload to DIR for `sentinel replay` "
    "(overrides server.capture_dir).",
)
def run(
    config_path: str | None,
    host: str | None,
    port: int | None,
    log_level: str | None,
    capture_dir: str | None,
) -> None:
    """Run the daemon until SIGTERM or Ctrl-C."""
    from mcp_sentinel.app import run_until_stopped
    from mcp_sentinel.telemetry.logging import configure_logging, secret_values

    settings = _load(config_path)
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if capture_dir is not None:
        updates["capture_dir"] = Path(capture_dir).resolve()
    if updates:
        settings.server = settings.server.model_copy(update=updates)
    telemetry = settings.telemetry
    configure_logging(
        (log_level or telemetry.log_level).upper(),
        json=telemetry.log_json,
        secrets=secret_values(settings),
    )
    try:
        asyncio.run(run_until_stopped(settings))
    except KeyboardInterrupt:
        pass
    except (OSError, SentinelError) as exc:
        # Start-up failures with a message meant for people: a port in use, an unwritable
        # audit log, bad TLS files, a state database in use by another daemon.
        click.echo(f"sentinel: cannot start: {exc}", err=True)
        sys.exit(1)


@main.command()
@_config_option
@click.option(
    "--offline", is_flag=True, help="Do not start or connect to the MCP servers to list tools."
)
def check(config_path: str | None, offline: bool) -> None:
    """Validate a config: every problem with its location, or a summary. Exit 1 on problems.

    Unless --offline, each MCP server is started (or connected to) once to list its tools.
    """
    from mcp_sentinel.agent.probe import probe_servers
    from mcp_sentinel.checks import check_settings, mcp_problems

    path = config_path_from(config_path)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        _print_problems(path, exc.problems)
        sys.exit(1)
    problems, warnings = check_settings(settings)
    probes = [] if offline else asyncio.run(probe_servers(settings.mcp_servers))
    problems += mcp_problems(probes)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        _print_problems(path, problems)
        sys.exit(1)
    enabled_sinks = settings.sinks.enabled_names()
    click.echo(f"{path}: OK")
    click.echo(f"  incident cards: {len(settings.incident_cards)}")
    for card in settings.incident_cards:
        click.echo(f"    {card.resource}: {card.prompt}")
    click.echo(f"  MCP servers:    {len(settings.mcp_servers)}")
    tools_by_server = {probe.server: probe.tools for probe in probes}
    for name, server in settings.mcp_servers.items():
        listed = tools_by_server.get(name)
        detail = f"{len(listed)} tools: {', '.join(listed)}" if listed is not None else "not probed"
        click.echo(f"    {name} ({server.transport}): {detail}")
    click.echo(f"  sinks:          {', '.join(enabled_sinks) or 'none'}")
    click.echo(f"  model:          {settings.openai.model} via {settings.openai.api}")


@main.command()
@_config_option
def cards(config_path: str | None) -> None:
    """List incident cards in routing order, with their matchers."""
    settings = _load(config_path)
    default = settings.dispatcher.default_card
    for index, card in enumerate(settings.incident_cards, start=1):
        marker = " (default)" if card.resource == default else ""
        click.echo(f"{index}. {card.resource}{marker}")
        click.echo(f"     match:  {', '.join(str(m) for m in card.matchers())}")
        click.echo(f"     prompt: {card.prompt}")
        click.echo(f"     model:  {card.model or settings.openai.model}")
        click.echo(f"     tools:  {', '.join(card.tools) or 'none'}")
        click.echo(f"     sinks:  {', '.join(card.sinks)}")
        click.echo(f"     limits: {card.max_iterations} turns, {card.timeout_seconds:g}s")
    if default is None:
        click.echo("alerts no card matches are counted as unrouted (no dispatcher.default_card)")


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
@_config_option
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def audit_verify(config_path: str | None, path: Path | None) -> None:
    """Check the audit log's hash chain (PATH, or sinks.audit.path of the config)."""
    from mcp_sentinel.sinks.audit import verify_audit_log

    if path is None:
        settings = _load(config_path)
        path = settings.resolve(settings.sinks.audit.path)
    if not path.exists():
        click.echo(f"{path}: no such file", err=True)
        sys.exit(1)
    result = verify_audit_log(path)
    for problem in result.problems:
        click.echo(f"{path}: {problem}", err=True)
    if not result.ok:
        click.echo(f"{path}: BROKEN ({len(result.problems)} problem(s), {result.records} records)")
        sys.exit(1)
    click.echo(f"{path}: OK, {result.records} record(s), chain intact")


@main.group("sinks")
def sinks_group() -> None:
    """Delivery to sinks: dead letters."""


@sinks_group.command("redeliver")
@_config_option
@click.option(
    "--sink",
    "sink_names",
    metavar="NAME",
    multiple=True,
    help="Only this sink's dead letters (repeatable; default: every sink that has some).",
)
def sinks_redeliver(config_path: str | None, sink_names: tuple[str, ...]) -> None:
    """Send dead letters again; delivered ones leave the file, failures stay. Exit 1 if any
    still fail."""
    from mcp_sentinel.sinks.redeliver import redeliver
    from mcp_sentinel.telemetry.logging import configure_logging, secret_values

    settings = _load(config_path)
    configure_logging(
        settings.telemetry.log_level.upper(),
        json=settings.telemetry.log_json,
        secrets=secret_values(settings),
    )
    try:
        results = asyncio.run(
            redeliver(settings.sinks, resolve=settings.resolve, sink_names=sink_names or None)
        )
    except ConfigError as exc:
        _print_problems(config_path_from(config_path), exc.problems)
        sys.exit(1)
    if not results:
        click.echo(f"no dead letters in {settings.resolve(settings.sinks.dead_letter_dir)}")
        return
    for result in results:
        if result.skipped_reason:
            click.echo(
                f"{result.sink}: skipped ({result.skipped_reason}); "
                f"{result.remaining} left in {result.path}"
            )
        else:
            click.echo(
                f"{result.sink}: {result.delivered} redelivered, {result.failed} still failing; "
                f"{result.remaining} left in {result.path}"
            )
    if any(result.failed or result.skipped_reason for result in results):
        sys.exit(1)


@main.command("replay")
@_config_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--dry-run", is_flag=True, help="Route and render only: show each alert's card and prompt."
)
@click.option(
    "--record",
    "record_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the model's responses and the tool results to DIR.",
)
@click.option(
    "--cassette",
    "cassette_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Replay the model and the tools from DIR: no network, deterministic.",
)
@click.option(
    "--expect",
    "expect_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Expectations (YAML): a pass/fail table, and exit 1 on any failure.",
)
@click.option("--sinks", "use_sinks", is_flag=True, help="Also deliver to the configured sinks.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("sentinel-replay.jsonl"),
    show_default=True,
    help="Where every incident record is written (JSONL).",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a report: HTML for .html, Markdown otherwise.",
)
@click.option("--concurrency", type=click.IntRange(1, 64), help="Investigations at once.")
@click.option("--log-level", default="WARNING", show_default=True)
def replay_command(
    *,
    config_path: str | None,
    paths: tuple[Path, ...],
    dry_run: bool,
    record_dir: Path | None,
    cassette_dir: Path | None,
    expect_file: Path | None,
    use_sinks: bool,
    output: Path,
    report_file: Path | None,
    concurrency: int | None,
    log_level: str,
) -> None:
    """Run captured alerts (webhook payloads, capture files, API dumps, JSONL, directories)
    through the same routing, prompts, agent and validators as `sentinel run`."""
    from mcp_sentinel.errors import PermanentError
    from mcp_sentinel.replay import engine
    from mcp_sentinel.replay.expect import evaluate, load_expectations
    from mcp_sentinel.replay.inputs import read_batches
    from mcp_sentinel.replay.report import summary_table, write_report
    from mcp_sentinel.telemetry.logging import configure_logging, secret_values

    if record_dir is not None and cassette_dir is not None:
        raise click.UsageError("--record and --cassette exclude each other")
    settings = _load(config_path)
    configure_logging(log_level.upper(), secrets=secret_values(settings))
    skipped: list[str] = []
    try:
        batches = read_batches(list(paths), skipped)
        expectations = load_expectations(expect_file) if expect_file else None
    except PermanentError as exc:
        click.echo(f"sentinel replay: {exc}", err=True)
        sys.exit(1)
    for note in skipped:
        click.echo(f"skipped {note}", err=True)
    if dry_run:
        for item in engine.dry_run(settings, batches):
            click.echo(f"== {item.origin}: {item.alert} -> {item.card or 'UNROUTED'}")
            if item.error:
                click.echo(f"   {item.error}")
            if item.prompt is not None:
                click.echo(f"--- instructions ({item.prompt.template})")
                click.echo(item.prompt.instructions.rstrip())
                click.echo("--- input")
                click.echo(item.prompt.alert_data.rstrip())
        return
    total = sum(len(batch.notifications) for batch in batches)
    options = engine.ReplayOptions(
        record_dir=record_dir,
        cassette_dir=cassette_dir,
        use_configured_sinks=use_sinks,
        output=output,
        concurrency=concurrency,
    )
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        result = asyncio.run(
            engine.replay(settings, batches, options, progress=lambda: bar.update(1))
        )
    results = None
    unmatched: list[str] = []
    if expectations is not None:
        results, unmatched = evaluate(expectations, result.records)
    click.echo(summary_table(result.records, results))
    if result.duplicates:
        click.echo(f"{result.duplicates} duplicate alert(s) skipped, as the daemon would")
    for unrouted in result.unrouted:
        click.echo(f"unrouted: {unrouted}")
    click.echo(f"records: {output}")
    if report_file is not None:
        write_report(report_file, result.records, results)
        click.echo(f"report: {report_file}")
    if results is not None:
        failed = [r for r in results if not r.passed]
        for verdict in failed:
            click.echo(
                f"FAIL: {verdict.alert} ({verdict.incident_id[:12]}): "
                + "; ".join(verdict.problems)
            )
        for problem in unmatched:
            click.echo(f"FAIL: {problem}")
        click.echo(
            f"expectations: {len(results) - len(failed)} passed, "
            f"{len(failed) + len(unmatched)} failed"
        )
        if failed or unmatched:
            sys.exit(1)


@main.group("mcp")
def mcp_group() -> None:
    """Built-in MCP servers (toolsets) for the agent."""


@mcp_group.command("prometheus")
@click.option(
    "--url", required=True, metavar="URL", help="Prometheus base URL, e.g. http://127.0.0.1:9090."
)
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP listen address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="HTTP listen port (0: any free port; the URL is printed on stderr).",
)
@click.option(
    "--timeout",
    "timeout_seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Seconds to wait for Prometheus per request.",
)
@click.option(
    "--max-series",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Series (or targets, alerts, rules) shown per answer; the rest are counted.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(min=200),
    default=6000,
    show_default=True,
    help="Characters per answer, truncation note included.",
)
@click.option(
    "--bearer-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding a bearer token for Prometheus.",
)
@click.option("--basic-auth-user", default=None, help="Basic auth user for Prometheus.")
@click.option(
    "--basic-auth-password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the basic auth password.",
)
def mcp_prometheus(
    *,
    url: str,
    use_http: bool,
    host: str,
    port: int,
    timeout_seconds: float,
    max_series: int,
    max_chars: int,
    bearer_token_file: Path | None,
    basic_auth_user: str | None,
    basic_auth_password_file: Path | None,
) -> None:
    """Serve read-only Prometheus tools over MCP: stdio by default, or streamable HTTP at
    http://HOST:PORT/mcp with --http."""
    from mcp_sentinel.toolsets.bounds import OutputLimits
    from mcp_sentinel.toolsets.prometheus_client import PrometheusAuth, PrometheusClient
    from mcp_sentinel.toolsets.prometheus_server import serve_http, serve_stdio

    try:
        auth = PrometheusAuth.from_files(
            bearer_token_file=bearer_token_file,
            basic_auth_user=basic_auth_user,
            basic_auth_password_file=basic_auth_password_file,
        )
        client = PrometheusClient(url, timeout_seconds=timeout_seconds, auth=auth)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    limits = OutputLimits(max_series=max_series, max_chars=max_chars)
    if use_http and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: serving MCP on {host} without authentication: whoever reaches the port "
            "can query Prometheus through it (with its credentials, if any)",
            err=True,
        )
    try:
        if use_http:
            asyncio.run(serve_http(client, limits, host=host, port=port))
        else:
            asyncio.run(serve_stdio(client, limits))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        click.echo(f"sentinel mcp prometheus: cannot start: {exc}", err=True)
        sys.exit(1)


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(f"mcp-sentinel {__version__}")
