"""Logging: loguru to standard error, as text or JSON, with the standard library routed in.

aiohttp, openai, the MCP client and the agents SDK log through ``logging``; an intercept
handler sends their records through the same loguru sink, so there is one format and one
level. Lines logged inside ``incident_context(...)`` carry the incident's id, fingerprint,
card and trace id (as ``extra`` fields in JSON, as a suffix in text).

As a last line of defence, every secret value of the configuration is masked in every
message before it is written, whoever logged it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger
from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from loguru import Record

_TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DDTHH:mm:ss.SSSZ}</green> <level>{level: <7}</level> "
    "<cyan>{name}</cyan> {message}"
)
_INCIDENT_FIELDS = ("incident_id", "card", "fingerprint", "trace_id")
_NOISY = {"httpx": logging.WARNING, "httpx2": logging.WARNING, "mcp": logging.WARNING}
_MIN_SECRET_LENGTH = 4
MASK = "***"


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def secret_values(settings: BaseModel) -> list[str]:
    """Every ``SecretStr`` value in a settings tree (models, dicts, lists), longest first."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if len(secret) >= _MIN_SECRET_LENGTH:
                found.add(secret)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    return sorted(found, key=len, reverse=True)


def _text_format(record: Record) -> str:
    extra = record["extra"]
    suffix = "".join(
        f" {name}={{extra[{name}]}}" for name in _INCIDENT_FIELDS if extra.get(name) is not None
    )
    return _TEXT_FORMAT + (f"<dim>{suffix}</dim>" if suffix else "") + "\n{exception}"


def configure_logging(
    level: str = "INFO",
    *,
    json: bool = False,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Replace every loguru sink with one on ``stream`` (stderr) and route ``logging`` into it.

    ``secrets`` are masked as ``***`` in every message and exception text.
    """
    masked = [secret for secret in secrets if len(secret) >= _MIN_SECRET_LENGTH]

    def mask(record: Record) -> None:
        message = record["message"]
        for secret in masked:
            if secret in message:
                message = message.replace(secret, MASK)
        record["message"] = message

    logger.remove()
    logger.configure(patcher=mask if masked else None)
    logger.add(
        stream or sys.stderr,
        level=level,
        serialize=json,
        format="{message}" if json else _text_format,
        colorize=None if not json else False,
        backtrace=False,
        diagnose=False,
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for name, noisy_level in _NOISY.items():
        logging.getLogger(name).setLevel(noisy_level)


@contextmanager
def incident_context(
    *, incident_id: str, card: str, fingerprint: str, trace_id: str | None = None
) -> Iterator[None]:
    """Every line logged in this block (this task and tasks it starts) names the incident."""
    with logger.contextualize(
        incident_id=incident_id, card=card, fingerprint=fingerprint, trace_id=trace_id
    ):
        yield
