"""Fixtures of the watcher tests: log lines captured from loguru."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger


class LogLines(list[str]):
    """Every log line emitted during the test, as ``LEVEL message``."""

    def matching(self, fragment: str) -> list[str]:
        return [line for line in self if fragment in line]


@pytest.fixture
def logs() -> Iterator[LogLines]:
    lines = LogLines()
    sink = logger.add(
        lambda message: lines.append(message.rstrip("\n")),
        format="{level} {message}",
        level="DEBUG",
    )
    try:
        yield lines
    finally:
        logger.remove(sink)
