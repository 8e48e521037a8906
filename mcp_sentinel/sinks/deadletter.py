"""Dead letters: deliveries that failed after every retry, one JSONL file per sink.

File ``<dead_letter_dir>/<sink>.jsonl`` (mode 600: records carry alert data), one entry per line::

    {"id": "<hex>", "sink": "slack", "failed_at": "<iso>", "error": "<safe message>",
     "attempts": 1, "record": {...IncidentRecord.as_dict(), "card_config": {...}}}

``record`` holds enough to rebuild the ``IncidentRecord`` (``record_from_json``), so
``redeliver`` can send it again to the same sink.

Concurrency: the daemon appends while ``sentinel sinks redeliver`` may rewrite the same file
from another process. Both hold an exclusive ``flock`` on the file while touching it, and the
appender checks that the path still names the inode it locked (a rewrite replaces the file
atomically), so no entry is lost between the two.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from mcp_sentinel.models import (
    AlertGroup,
    Incident,
    IncidentCard,
    IncidentNotification,
    IncidentReport,
    Source,
)
from mcp_sentinel.prompts import RenderedPrompt
from mcp_sentinel.sinks.base import IncidentRecord


def record_to_json(record: IncidentRecord) -> dict[str, Any]:
    """``IncidentRecord.as_dict()`` plus the card's whole config, so it can be rebuilt."""
    data = record.as_dict()
    data["card_config"] = record.incident.card.model_dump(mode="json")
    return data


def record_from_json(data: Mapping[str, Any]) -> IncidentRecord:
    """The inverse of ``record_to_json``. Raises ``ValueError`` (or ``KeyError``) when the entry
    is not a record this version understands."""
    raw = data["notification"]
    group = raw.get("group") or {}
    notification = IncidentNotification(
        fingerprint=str(raw["fingerprint"]),
        starts_at=datetime.fromisoformat(raw["starts_at"]),
        ends_at=datetime.fromisoformat(raw["ends_at"]) if raw.get("ends_at") else None,
        status="resolved" if raw["status"] == "resolved" else "firing",
        labels=dict(raw.get("labels") or {}),
        annotations=dict(raw.get("annotations") or {}),
        generator_url=str(raw.get("generator_url") or ""),
        group=AlertGroup(
            key=str(group.get("key", "")),
            labels=dict(group.get("labels") or {}),
            receiver=str(group.get("receiver", "")),
            external_url=str(group.get("external_url", "")),
        ),
        source=cast(Source, raw.get("source", "webhook")),
        received_at=datetime.fromisoformat(raw["received_at"]),
    )
    try:
        card = IncidentCard.model_validate(data["card_config"])
    except (KeyError, ValidationError):
        # A card from an older config: only its name matters to a sink.
        card = IncidentCard(resource=str(data["card"]), prompt="-")
    prompt = data.get("prompt")
    return IncidentRecord(
        incident=Incident(notification, card, incident_id=str(data["incident_id"])),
        prompt=None
        if not prompt
        else RenderedPrompt(
            instructions=prompt["instructions"],
            alert_data=prompt["alert_data"],
            template=prompt["template"],
        ),
        report=IncidentReport.model_validate(data["report"]),
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a dead-letter file, as read back."""

    id: str
    sink: str
    error: str
    attempts: int
    data: dict[str, Any]  # the whole line

    def record(self) -> IncidentRecord:
        return record_from_json(self.data["record"])


class DeadLetterStore:
    """The dead-letter directory. Created on the first entry, so a healthy daemon leaves none.

    Methods starting with ``append`` or ``finish`` do blocking file I/O on a worker thread.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        return self._directory

    def path_for(self, sink: str) -> Path:
        return self._directory / f"{sink}.jsonl"

    def sinks_with_entries(self) -> list[str]:
        """Names of sinks whose dead-letter file exists and is not empty."""
        if not self._directory.is_dir():
            return []
        return sorted(
            path.stem
            for path in self._directory.glob("*.jsonl")
            if path.is_file() and path.stat().st_size > 0
        )

    async def append(self, sink: str, record: IncidentRecord, error: str) -> Path:
        """Add one failed delivery; returns the file it went to."""
        entry = {
            "id": uuid.uuid4().hex,
            "sink": sink,
            "failed_at": datetime.now(UTC).isoformat(),
            "error": error,
            "attempts": 1,
            "record": record_to_json(record),
        }
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        path = self.path_for(sink)
        await asyncio.to_thread(_append_locked, path, line.encode())
        return path

    def read(self, sink: str) -> list[DeadLetter]:
        """Every readable entry of the sink's file (a torn line from a crash is skipped here
        and kept in the file)."""
        path = self.path_for(sink)
        if not path.exists():
            return []
        entries = []
        for line in path.read_bytes().splitlines():
            entry = _parse(line)
            if entry is not None:
                entries.append(entry)
        return entries

    async def finish(self, sink: str, delivered: set[str], still_failing: dict[str, str]) -> int:
        """After a redelivery: drop the ``delivered`` ids, note the new error of the others.
        Entries appended meanwhile are kept. Returns how many entries remain."""
        return await asyncio.to_thread(
            _rewrite_locked, self.path_for(sink), delivered, still_failing
        )


def _parse(line: bytes) -> DeadLetter | None:
    try:
        data = json.loads(line)
        return DeadLetter(
            id=str(data["id"]),
            sink=str(data["sink"]),
            error=str(data.get("error", "")),
            attempts=int(data.get("attempts", 1)),
            data=data,
        )
    except (ValueError, KeyError, TypeError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _append_locked(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                continue  # replaced while we waited for the lock: open the new file
            if os.fstat(fd).st_ino != current:
                continue
            _write_all(fd, data)
            os.fsync(fd)
            return
        finally:
            os.close(fd)  # also releases the lock


def _rewrite_locked(path: Path, delivered: set[str], still_failing: dict[str, str]) -> int:
    if not path.exists():
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as handle:
            lines = handle.read().splitlines()
        kept: list[bytes] = []
        now = datetime.now(UTC).isoformat()
        for line in lines:
            if not line.strip():
                continue
            entry = _parse(line)
            if entry is None:
                kept.append(line)  # unreadable: keep it for a human, never drop data silently
                continue
            if entry.id in delivered:
                continue
            if entry.id in still_failing:
                data = dict(entry.data)
                data["error"] = still_failing[entry.id]
                data["attempts"] = entry.attempts + 1
                data["last_attempt_at"] = now
                kept.append(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
                continue
            kept.append(line)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(tmp_fd, b"".join(line + b"\n" for line in kept))
            os.fsync(tmp_fd)
        finally:
            os.close(tmp_fd)
        os.replace(tmp, path)  # atomic; an appender waiting on our lock sees the new inode
        return len(kept)
    finally:
        os.close(fd)
