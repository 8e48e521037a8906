"""Builds the configured sinks and the dispatcher that delivers to them.

``open_sinks`` is what the app calls; ``open_sink_objects`` (the sinks alone, no dispatcher)
is what ``redeliver`` uses. Everything opened goes on the caller's ``AsyncExitStack``: the
dispatcher is entered last, so on close it drains before the sinks' HTTP sessions close.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TextIO

from loguru import logger
from opentelemetry.trace import Tracer

from mcp_sentinel.sinks.audit import AuditSink
from mcp_sentinel.sinks.base import Sink
from mcp_sentinel.sinks.console import ConsoleSink
from mcp_sentinel.sinks.deadletter import DeadLetterStore
from mcp_sentinel.sinks.delivery import SinkDispatcher
from mcp_sentinel.sinks.http import host_of
from mcp_sentinel.sinks.jira import JiraSink
from mcp_sentinel.sinks.jira_issues import IssueKeyStore, JiraIssueMap
from mcp_sentinel.sinks.outbox import Outbox
from mcp_sentinel.sinks.retry import RetryPolicy
from mcp_sentinel.sinks.settings import SinksSettings
from mcp_sentinel.sinks.slack import SlackBotSink, SlackWebhookSink
from mcp_sentinel.sinks.slack_threads import SlackThreadStore
from mcp_sentinel.sinks.webhook import WebhookSink
from mcp_sentinel.telemetry.metrics import SentinelMetrics

#: Delivered by the worker itself (local and fast; the audit record is on disk when the
#: worker moves on). Every other sink is queued.
INLINE_SINKS = frozenset({"console", "audit"})
#: While one of these cannot deliver, the daemon refuses new alerts (503): the audit log is
#: the record of what was done, and a full disk would take the state database down next.
GATING_SINKS = frozenset({"audit"})

Sleep = Callable[[float], Awaitable[None]]


def jira_issue_map_path(settings: SinksSettings, resolve: Callable[[Path], Path]) -> Path:
    """``jira.issue_map_path``, else ``jira-issue-map.json`` next to the dead-letter dir."""
    if settings.jira is not None and settings.jira.issue_map_path is not None:
        return resolve(settings.jira.issue_map_path)
    return resolve(settings.dead_letter_dir).parent / "jira-issue-map.json"


async def open_sink_objects(
    settings: SinksSettings,
    *,
    resolve: Callable[[Path], Path],
    stack: AsyncExitStack,
    console_stream: TextIO | None = None,
    only: Collection[str] | None = None,
    sleep: Sleep | None = None,
    slack_threads: SlackThreadStore | None = None,
    jira_issues: IssueKeyStore | None = None,
) -> dict[str, Sink]:
    """Open every enabled sink (or those named in ``only``) on ``stack``, in config order.
    ``sleep`` replaces the retry waits' clock (tests). ``slack_threads`` and ``jira_issues``
    replace the sinks' own state (memory, a JSON file) with a shared one."""
    wanted = [name for name in settings.enabled_names() if only is None or name in only]
    sinks: dict[str, Sink] = {}
    for name in wanted:
        if name == "console":
            sinks[name] = ConsoleSink(console_stream)
        elif name == "audit":
            audit_path = resolve(settings.audit.path)
            sinks[name] = await stack.enter_async_context(AuditSink(audit_path))
            logger.info("audit log: {path}", path=audit_path)
        elif name == "slack" and settings.slack is not None:
            retry = RetryPolicy.from_settings(settings.retry_for("slack"), sleep=sleep)
            slack = settings.slack
            if slack.uses_bot:
                sinks[name] = await stack.enter_async_context(
                    SlackBotSink(slack, retry=retry, threads=slack_threads)
                )
                logger.info(
                    "slack: Web API at {host}, channel {channel}",
                    host=host_of(slack.api_url),
                    channel=slack.channel,
                )
            else:
                sinks[name] = await stack.enter_async_context(SlackWebhookSink(slack, retry=retry))
                url = slack.webhook_url.get_secret_value() if slack.webhook_url else ""
                logger.info("slack: incoming webhook at {host}", host=host_of(url))
        elif name == "jira" and settings.jira is not None:
            retry = RetryPolicy.from_settings(settings.retry_for("jira"), sleep=sleep)
            file_map = JiraIssueMap(jira_issue_map_path(settings, resolve))
            sinks[name] = await stack.enter_async_context(
                JiraSink(settings.jira, retry=retry, issue_map=jira_issues or file_map)
            )
            logger.info(
                "jira: {host} (REST v{version}), project {project}, issue keys {where}",
                host=host_of(settings.jira.base_url),
                version=settings.jira.api_version,
                project=settings.jira.project_key,
                where="shared in redis"
                if jira_issues is not None
                else f"in {file_map.path} ({len(file_map)} known)",
            )
        elif name == "webhook" and settings.webhook is not None:
            retry = RetryPolicy.from_settings(settings.retry_for("webhook"), sleep=sleep)
            sinks[name] = await stack.enter_async_context(
                WebhookSink(settings.webhook, retry=retry)
            )
            logger.info(
                "webhook: {host}{signed}",
                host=host_of(settings.webhook.url.get_secret_value()),
                signed=", signed" if settings.webhook.hmac_secret is not None else "",
            )
    return sinks


async def open_sinks(
    settings: SinksSettings,
    *,
    resolve: Callable[[Path], Path],
    metrics: SentinelMetrics,
    stack: AsyncExitStack,
    console_stream: TextIO | None = None,
    sleep: Sleep | None = None,
    outbox: Outbox | None = None,
    tracer: Tracer | None = None,
    slack_threads: SlackThreadStore | None = None,
    jira_issues: IssueKeyStore | None = None,
) -> SinkDispatcher:
    """Open every enabled sink and the dispatcher on ``stack`` (closed when it closes) and
    return the dispatcher, the ``SinkFanout`` the incident handler uses.

    ``resolve`` makes config paths absolute (against the config file's directory). With
    ``outbox`` (the SQLite or the Redis backend) deliveries are stored until their sink takes
    them, and are retried across restarts; without, they live in memory (``delivery`` says
    more).
    """
    sinks = await open_sink_objects(
        settings,
        resolve=resolve,
        stack=stack,
        console_stream=console_stream,
        sleep=sleep,
        slack_threads=slack_threads,
        jira_issues=jira_issues,
    )
    dispatcher = SinkDispatcher(
        sinks,
        inline=INLINE_SINKS,
        dead_letters=DeadLetterStore(resolve(settings.dead_letter_dir)),
        metrics=metrics,
        queue_size=settings.queue_size,
        drain_timeout=settings.drain_timeout_seconds,
        outbox=outbox,
        gating=GATING_SINKS,
        tracer=tracer,
    )
    return await stack.enter_async_context(dispatcher)
