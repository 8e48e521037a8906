"""The shared contract of every remote sink: a failure never reveals the sink's secret.

For each sink (Slack webhook, Slack bot, Jira Cloud, Jira Server, webhook) and each way of
failing (the server keeps answering 5xx, the server rejects the credentials or the URL, nothing
listens), the error raised, its whole formatted traceback, every log line (loguru, TRACE and
up) and the dead-letter file must not contain the secret: the webhook URL's token, the bot
token, the API token (and its Basic header form), the PAT, the HMAC secret. The sinks are built
by ``open_sinks``, the daemon's own path.
"""

from __future__ import annotations

import base64
import json
import socket
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mcp_sentinel.errors import SentinelError
from mcp_sentinel.models import IncidentNotification
from mcp_sentinel.sinks.factory import open_sink_objects, open_sinks
from mcp_sentinel.sinks.settings import SinksSettings
from mcp_sentinel.telemetry.metrics import SentinelMetrics
from tests.fakes.jira_server import FakeJira
from tests.fakes.slack_server import FakeSlack
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.sinks.support import RecordingSleep, captured_logs, firing_record

Notifications = Callable[[str], list[IncidentNotification]]

HOOK_TOKEN = "xyzzy-hook-token-91d3"
REVOKED_HOOK_TOKEN = "revoked-hook-token-12ab"
BOT_TOKEN = "xoxb-secret-bot-token-55aa"
WRONG_BOT_TOKEN = "xoxb-wrong-bot-token-66bb"
JIRA_EMAIL = "sentinel@example.com"
API_TOKEN = "jira-api-token-secret-3c3c"
WRONG_API_TOKEN = "jira-api-token-wrong-9f9f"
PAT = "jira-pat-secret-4d4d"
WRONG_PAT = "jira-pat-wrong-5e5e"
WEBHOOK_PATH_TOKEN = "tok-secret-77ef"
HMAC_SECRET = "hmac-secret-8e8e"

SCENARIOS = ("server_error", "rejected", "unreachable")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again on exit: nothing listens there


def basic(token: str) -> str:
    return base64.b64encode(f"{JIRA_EMAIL}:{token}".encode()).decode()


@dataclass
class Case:
    sink: str  # the sink's name
    config: dict[str, Any]  # its section under `sinks`
    secrets: list[str]


@asynccontextmanager
async def failing(kind: str, scenario: str) -> AsyncIterator[Case]:
    """A server for ``kind`` set up to fail per ``scenario``, and the sink config for it."""
    down = f"http://127.0.0.1:{closed_port()}"
    if kind in ("slack_webhook", "slack_bot"):
        async with FakeSlack(
            bot_token=BOT_TOKEN, webhook_path=f"/services/T0/B0/{HOOK_TOKEN}"
        ) as slack:
            if scenario == "server_error":
                slack.fail_next(50, 500)
            if kind == "slack_webhook":
                url = {
                    "server_error": slack.webhook_url,
                    "rejected": slack.webhook_url.replace(HOOK_TOKEN, REVOKED_HOOK_TOKEN),
                    "unreachable": f"{down}/services/T0/B0/{HOOK_TOKEN}",
                }[scenario]
                yield Case("slack", {"webhook_url": url}, [HOOK_TOKEN, REVOKED_HOOK_TOKEN, url])
            else:
                token = WRONG_BOT_TOKEN if scenario == "rejected" else BOT_TOKEN
                api = f"{down}/api" if scenario == "unreachable" else slack.api_url
                yield Case(
                    "slack",
                    {"bot_token": token, "channel": "#oncall", "api_url": api},
                    [token],
                )
    elif kind in ("jira_cloud", "jira_server"):
        cloud = kind == "jira_cloud"
        async with FakeJira(
            mode="cloud" if cloud else "server", email=JIRA_EMAIL, api_token=API_TOKEN, pat=PAT
        ) as jira:
            if scenario == "server_error":
                jira.fail_next(50, 503)
            base = down if scenario == "unreachable" else jira.base_url
            secret = (
                (WRONG_API_TOKEN if cloud else WRONG_PAT)
                if scenario == "rejected"
                else (API_TOKEN if cloud else PAT)
            )
            config: dict[str, Any] = {"base_url": base, "project_key": "OPS"}
            if cloud:
                config |= {"email": JIRA_EMAIL, "api_token": secret}
                secrets = [secret, basic(secret)]
            else:
                config |= {"api_version": 2, "pat": secret}
                secrets = [secret]
            yield Case("jira", config, secrets)
    else:
        async with WebhookReceiver(path=f"/hooks/{WEBHOOK_PATH_TOKEN}") as receiver:
            if scenario == "server_error":
                receiver.fail_next(50, 500)
            url = {
                "server_error": receiver.url,
                "rejected": receiver.url.replace(WEBHOOK_PATH_TOKEN, "tok-revoked-0a0a"),
                "unreachable": f"{down}/hooks/{WEBHOOK_PATH_TOKEN}",
            }[scenario]
            yield Case(
                "webhook",
                {"url": url, "hmac_secret": HMAC_SECRET},
                [WEBHOOK_PATH_TOKEN, "tok-revoked-0a0a", HMAC_SECRET, url],
            )


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize(
    "kind", ["slack_webhook", "slack_bot", "jira_cloud", "jira_server", "webhook"]
)
async def test_failures_never_reveal_the_secret(
    tmp_path: Path, notifications: Notifications, kind: str, scenario: str
) -> None:
    (alert,) = notifications("webhook_firing_single_alert")
    record = firing_record(alert)
    async with failing(kind, scenario) as case:
        settings = SinksSettings.model_validate(
            {
                "console": {"enabled": False},
                "audit": {"enabled": False},
                case.sink: case.config,
                "dead_letter_dir": str(tmp_path / "dl"),
                "retry": {"max_attempts": 3, "initial_wait_seconds": 0.01},
            }
        )
        sleep = RecordingSleep()
        with captured_logs() as logs:
            async with AsyncExitStack() as stack:
                sinks = await open_sink_objects(
                    settings, resolve=lambda path: path, stack=stack, sleep=sleep
                )
                with pytest.raises(SentinelError) as caught:
                    await sinks[case.sink].deliver(record)
            async with AsyncExitStack() as stack:
                fanout = await open_sinks(
                    settings,
                    resolve=lambda path: path,
                    metrics=SentinelMetrics(CollectorRegistry()),
                    stack=stack,
                    sleep=sleep,
                )
                await fanout.started(record.incident, [case.sink])
                await fanout.deliver(record, [case.sink])

    error = caught.value
    message = str(error)
    assert "127.0.0.1:" in message  # informative: names the host
    if scenario != "rejected":
        assert "attempt(s)" in message and len(sleep.waits) >= 2  # retried, then gave up
    dead_letter = (tmp_path / "dl" / f"{case.sink}.jsonl").read_text()
    (entry,) = [json.loads(line) for line in dead_letter.splitlines()]
    assert entry["error"].startswith(message.split(" (gave up", maxsplit=1)[0])
    texts = {
        "message": message,
        "repr": repr(error),
        "traceback": "".join(traceback.format_exception(error)),
        "logs": "\n".join(logs),
        "dead letter": dead_letter,
    }
    assert any("failed for incident" in line for line in logs)
    for secret in case.secrets:
        for where, text in texts.items():
            assert secret not in text, f"the secret appears in the {where}"
