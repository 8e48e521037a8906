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
from mcp_sentinel.errors import ConfigError, ConfigProblem

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
    except OSError as exc:
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


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(f"mcp-sentinel {__version__}")
