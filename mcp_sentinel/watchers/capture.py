"""Capture of accepted webhook requests, for ``sentinel replay`` (``server.capture_dir``).

One JSON file per accepted request (answered 200), in the capture directory::

    20261122T033320.362Z-1f2e3d4c.json

The name is the UTC receive time to the millisecond, then 8 random hex digits, so names sort
by time and never collide. The file is one JSON object, UTF-8, ending in a newline::

    {"received_at": "2026-11-22T03:33:20.362+00:00",
     "headers": {"User-Agent": "Alertmanager/0.25.0", "Content-Type": "application/json", ...},
     "payload": <the request body>}

- ``received_at``: ISO 8601 with the UTC offset, millisecond precision: the same moment the
  alerts were stamped with.
- ``headers``: the request headers as sent (names in their received case, repeated headers
  joined with ", "), minus credentials: Authorization, Proxy-Authorization, Cookie, Set-Cookie
  and any header whose name mentions auth, token, secret, key, password, session, signature or
  credential.
- ``payload``: the request body's bytes, embedded verbatim (the body was valid JSON, or it would
  not have been accepted), so ``json.load(file)["payload"]`` is the Alertmanager payload exactly
  as parsed on arrival. Should the verbatim body not combine into valid JSON, the parsed payload
  is written re-serialised instead.

Readers should ignore keys they do not know, and files whose names start with ``.``: a file is
first written as ``.<name>.tmp`` and then renamed, so a complete file appears atomically.
Writing happens in a worker thread (``asyncio.to_thread``); a failure is logged and never
fails the request.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

_DROPPED = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_LOOKING = re.compile(
    r"auth|token|secret|key|passw|session|signature|credential", re.IGNORECASE
)


def safe_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers worth keeping: credentials and anything that looks like one dropped."""
    kept: dict[str, str] = {}
    for name, value in headers:
        if name.lower() in _DROPPED or _SECRET_LOOKING.search(name):
            continue
        kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept


def capture_name(received_at: datetime) -> str:
    """``20261122T033320.362Z-<8 hex>.json``: sorts by time, unique."""
    moment = received_at.astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond // 1000:03d}Z"
    return f"{stamp}-{secrets.token_hex(4)}.json"


def capture_document(body: bytes, headers: dict[str, str], received_at: datetime) -> bytes:
    """The file's bytes: the envelope with the body embedded verbatim as ``payload``."""
    envelope = {
        "received_at": received_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "headers": headers,
    }
    head = json.dumps(envelope, ensure_ascii=False)[:-1]  # without its closing brace
    document = head.encode() + b', "payload": ' + body + b"}\n"
    try:
        json.loads(document)
    except ValueError:
        # Valid to pydantic yet not embeddable (a byte-order mark, say): keep the content.
        envelope["payload"] = json.loads(body.decode("utf-8-sig"))
        return json.dumps(envelope, ensure_ascii=False).encode() + b"\n"
    return document


class CaptureWriter:
    """Writes capture files into ``directory`` (created when missing). Owned by the webhook."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def write(
        self, body: bytes, headers: Iterable[tuple[str, str]], received_at: datetime
    ) -> Path | None:
        """Write one capture file off the event loop; its path, or None when it failed."""
        kept = safe_headers(headers)
        try:
            return await asyncio.to_thread(self._write, body, kept, received_at)
        except Exception as exc:  # capture is best effort: the alerts are already accepted
            logger.error(
                "could not write the capture file in {directory}: {error}",
                directory=self.directory,
                error=f"{type(exc).__name__}: {exc}",
            )
            return None

    def _write(self, body: bytes, headers: dict[str, str], received_at: datetime) -> Path:
        """Runs in a worker thread: temporary file, fsync, rename."""
        self.directory.mkdir(parents=True, exist_ok=True)
        document = capture_document(body, headers, received_at)
        final = self.directory / capture_name(received_at)
        temporary = self.directory / f".{final.name}.tmp"
        try:
            with temporary.open("wb") as handle:
                handle.write(document)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return final
