"""The audit sink: an append-only JSONL file whose records are hash-chained.

Each line is one incident: the notification, the card, the rendered prompt, every tool call
with its arguments and result, the report, timings and token usage; plus ``seq``,
``prev_hash`` and ``hash``, where ``hash`` is the SHA-256 of the record's canonical JSON
without ``hash``. Changing, removing or reordering a line breaks the chain, which
``verify_audit_log`` (``sentinel audit verify``) reports.

Each line is written in canonical form (keys sorted, as ``canonical_hash`` encodes it) with
``hash`` added last, so the text hashed is the text written, encoded once.

Writes happen on a worker thread, one at a time, each followed by ``fsync``; the records
delivered while one is under way go together in the next (group commit: one fsync for all of
them). ``deliver`` returns once its record is on disk: an incident's record is there before the
sink says it is delivered. A write that fails is cut back off the file and fails each of its
deliveries; the chain continues from the last record written. A caller cancelled while its
record is being written does not stop the write (the record may then be on disk twice, after
the outbox delivers it again, as after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.sinks.base import IncidentRecord, canonical_json, canonical_object

GENESIS_HASH = "0" * 64
_TAIL_BYTES = 1 << 20


def canonical_hash(record: dict[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _entry(record: IncidentRecord, seq: int, prev_hash: str) -> tuple[bytes, str]:
    """The line for ``record`` as record ``seq`` after ``prev_hash``, and its hash."""
    fields = {
        **record.json_fields(),
        "seq": str(seq),
        "recorded_at": canonical_json(datetime.now(UTC).isoformat()),
        "prev_hash": canonical_json(prev_hash),
    }
    body = canonical_object(fields)  # == canonical_json of the entry without its hash
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n'.encode(), digest


def _last_record(path: Path) -> tuple[int, str, bool]:
    """(seq, hash, ends_with_newline) of the file's last complete record."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, GENESIS_HASH, True
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    ends_clean = tail.endswith(b"\n")
    for line in reversed(tail.splitlines()):
        try:
            record = json.loads(line)
            return int(record["seq"]), str(record["hash"]), ends_clean
        except (ValueError, KeyError, TypeError):
            continue
    return 0, GENESIS_HASH, ends_clean


@dataclass(slots=True)
class _Pending:
    record: IncidentRecord
    written: asyncio.Future[None]


class AuditSink:
    """Appends hash-chained records to ``path``. An async context manager: entering opens
    the file (creating its directory), leaving waits for the write under way and closes it.
    Used from one event loop."""

    name = "audit"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: BinaryIO | None = None
        self._seq = 0  # of the last record on disk
        self._prev_hash = GENESIS_HASH
        self._pending: list[_Pending] = []
        self._writing: asyncio.Future[None] | None = None  # the write under way

    @property
    def path(self) -> Path:
        return self._path

    async def __aenter__(self) -> AuditSink:
        await asyncio.to_thread(self._open)
        return self

    def _open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._seq, self._prev_hash, ends_clean = _last_record(self._path)
            # Unbuffered: a failed write leaves no bytes behind in a buffer to be flushed later.
            self._handle = self._path.open("ab", buffering=0)
            if not ends_clean:  # a torn last line from a crash: start ours on a fresh line
                self._handle.write(b"\n")
        except OSError as exc:
            raise PermanentError(f"cannot open the audit log {self._path}: {exc.strerror}") from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        while self._writing is not None:  # what is being written is finished before the close
            await asyncio.wait([self._writing])
        if self._handle is not None:
            await asyncio.to_thread(self._handle.close)
            self._handle = None

    async def deliver(self, record: IncidentRecord) -> None:
        """Append ``record``; return once it is on disk, or raise ``PermanentError``."""
        record.json_fields()  # the encoding, on the caller's turn rather than in a batch
        pending = _Pending(record, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        if self._writing is None:
            self._write_pending()
        await pending.written

    def _write_pending(self) -> None:
        """Chain every pending record after the last one on disk and write them at once."""
        batch = [pending for pending in self._pending if not pending.written.done()]
        self._pending = []
        if not batch:
            return
        seq, prev_hash = self._seq, self._prev_hash
        lines = []
        for pending in batch:
            seq += 1
            line, prev_hash = _entry(pending.record, seq, prev_hash)
            lines.append(line)
        loop = asyncio.get_running_loop()
        writing = loop.run_in_executor(None, self._write, b"".join(lines))
        self._writing = writing
        writing.add_done_callback(lambda done: self._settle(batch, seq, prev_hash, done))

    def _settle(
        self, batch: list[_Pending], seq: int, prev_hash: str, done: asyncio.Future[None]
    ) -> None:
        """On the loop, once a write returned: advance the chain if it is on disk, answer
        its deliveries, and write what came meanwhile."""
        self._writing = None
        error = (
            PermanentError(f"the write to the audit log {self._path} was cancelled")
            if done.cancelled()
            else done.exception()
        )
        if error is None:
            self._seq, self._prev_hash = seq, prev_hash
        for pending in batch:
            if pending.written.done():
                continue  # its caller was cancelled meanwhile
            if error is None:
                pending.written.set_result(None)
            else:
                pending.written.set_exception(error)
        if self._pending:
            self._write_pending()

    def _write(self, data: bytes) -> None:
        if self._handle is None:
            raise PermanentError("the audit log is not open")
        fd = self._handle.fileno()
        offset = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as exc:
            # A full disk may take part of the line: cut it back, so a retry appends a whole
            # record after the last good one instead of a torn or doubled line.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            raise PermanentError(
                f"cannot write the audit log {self._path}: {exc.strerror}"
            ) from exc


@dataclass(slots=True)
class AuditVerification:
    """The result of checking a chain: how many records, and every problem by line."""

    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_audit_log(path: Path) -> AuditVerification:
    """Check every record's hash and its link to the one before."""
    result = AuditVerification()
    prev_hash = GENESIS_HASH
    expected_seq = 1
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                seq, stored = int(record["seq"]), str(record["hash"])
                linked = str(record["prev_hash"])
            except (ValueError, KeyError, TypeError):
                if raw.endswith(b"\n"):
                    result.problems.append(f"line {number}: not a complete audit record")
                else:  # the file's last line: a running daemon may be writing it right now
                    result.problems.append(
                        f"line {number}: the last record is unfinished (being written now,"
                        " or cut short by a crash)"
                    )
                continue
            result.records += 1
            if canonical_hash(record) != stored:
                result.problems.append(
                    f"line {number} (seq {seq}): content does not match its hash"
                )
            if linked != prev_hash:
                result.problems.append(
                    f"line {number} (seq {seq}): prev_hash does not link to the record before"
                )
            if seq != expected_seq:
                result.problems.append(f"line {number}: seq {seq}, expected {expected_seq}")
            prev_hash, expected_seq = stored, seq + 1
    return result
