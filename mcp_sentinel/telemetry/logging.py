"""Logging: loguru to standard error, as text or JSON, with the standard library routed in.

aiohttp, openai, the MCP client and the agents SDK log through ``logging``; an intercept
handler sends their records through the same loguru sink so there is one format and one level.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from loguru import logger

_TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DDTHH:mm:ss.SSSZ}</green> <level>{level: <7}</level> "
    "<cyan>{name}</cyan> {message}"
)
_NOISY = {"httpx": logging.WARNING, "httpx2": logging.WARNING, "mcp": logging.WARNING}


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(
    level: str = "INFO", *, json: bool = False, stream: TextIO | None = None
) -> None:
    """Replace every loguru sink with one on ``stream`` (stderr) and route ``logging`` into it."""
    logger.remove()
    logger.add(
        stream or sys.stderr,
        level=level,
        serialize=json,
        format="{message}" if json else _TEXT_FORMAT,
        colorize=None if not json else False,
        backtrace=False,
        diagnose=False,
    )
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for name, noisy_level in _NOISY.items():
        logging.getLogger(name).setLevel(noisy_level)
