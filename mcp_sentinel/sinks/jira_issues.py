"""The Jira sink's fingerprint -> issue-key map: ``IssueKeyStore``, and its JSON-file form.

``IssueKeyStore`` is the seam: ``JiraIssueMap`` below (one process, a small JSON file) or
``redis_sink_state.RedisJiraIssues`` (a Redis hash every replica shares).

Jira's search is eventually consistent (an issue created a second ago may not be found yet), so
the sink remembers the issues it created: ``{"version": 1, "issues": {"<fingerprint>": "OPS-1"}}``.
Writes are atomic (a temporary file, fsync, rename) so a crash leaves the old map or the new one,
never half of one; before writing, entries another process added (``sentinel sinks redeliver``)
are merged in. A file that cannot be read is set aside as ``<name>.corrupt`` and the map starts
empty: the JQL lookup still finds the issues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Protocol

from loguru import logger


class IssueKeyStore(Protocol):
    """Fingerprint -> issue key. ``load`` once before use (the sink does on entering)."""

    async def load(self) -> None: ...

    async def lookup(self, fingerprint: str) -> str | None: ...

    async def set(self, fingerprint: str, key: str) -> None:
        """Remember ``key`` durably before returning."""
        ...


class JiraIssueMap:
    """Implements ``IssueKeyStore`` in a JSON file. Owned by one ``JiraSink``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._issues: dict[str, str] = {}
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def get(self, fingerprint: str) -> str | None:
        return self._issues.get(fingerprint)

    async def lookup(self, fingerprint: str) -> str | None:
        return self._issues.get(fingerprint)

    def __len__(self) -> int:
        return len(self._issues)

    async def load(self) -> None:
        self._issues = await asyncio.to_thread(self._read)

    async def set(self, fingerprint: str, key: str) -> None:
        """Remember ``key`` for ``fingerprint`` and persist the map before returning."""
        async with self._lock:
            self._issues[fingerprint] = key
            await asyncio.to_thread(self._write)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            issues = data["issues"]
            if not isinstance(issues, dict):
                raise TypeError("issues is not a mapping")
            return {str(fp): str(key) for fp, key in issues.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError):
            aside = self._path.with_name(self._path.name + ".corrupt")
            logger.warning(
                "jira issue map {path} is unreadable; set aside as {aside}, starting empty",
                path=self._path,
                aside=aside,
            )
            with contextlib.suppress(OSError):
                os.replace(self._path, aside)
            return {}

    def _write(self) -> None:
        on_disk = self._read() if self._path.exists() else {}
        merged = {**on_disk, **self._issues}
        self._issues = merged
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        text = json.dumps({"version": 1, "issues": merged}, indent=1, sort_keys=True)
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
