"""Cassettes: an investigation's model responses and tool results, saved and replayed.

``--record DIR`` wraps the real model and the real MCP servers and writes, per incident, every
model response and every tool call with its result; plus each server's tool list. ``--cassette
DIR`` replays them: the model and the MCP servers are stand-ins that answer from the files, no
process is started and no network is touched, so a replay is deterministic. The validators,
prompts, routing and sinks run for real either way: a cassette pins only what the outside
world said.

Layout of DIR: ``tools/<server>.json`` (the server's tool list) and ``incidents/<key>.json``
with ``{"model": [response, ...], "tools": [{"server", "tool", "arguments", "result"}, ...]}``,
where ``<key>`` is ``<fingerprint>-<startsAt as epoch ms>-<status>``. Which incident a call
belongs to is carried in a context variable set around each investigation.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents import Model, ModelResponse, Usage
from mcp.types import CallToolResult
from mcp.types import Tool as McpTool
from openai.types.responses import ResponseOutputItem
from pydantic import TypeAdapter

from mcp_sentinel.errors import PermanentError
from mcp_sentinel.models import IncidentNotification

_OUTPUT_ITEMS = TypeAdapter(list[ResponseOutputItem])


class CassetteMissError(PermanentError):
    """The cassette has no recording for what the run asked."""


def incident_key(notification: IncidentNotification) -> str:
    millis = int(notification.starts_at.timestamp() * 1000)
    return f"{notification.fingerprint}-{millis}-{notification.status}"


@dataclass(slots=True)
class IncidentTape:
    """What one incident's run said to the outside world, in order."""

    key: str
    model: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    model_cursor: int = 0
    used_tools: set[int] = field(default_factory=set)


current_tape: contextvars.ContextVar[IncidentTape | None] = contextvars.ContextVar(
    "sentinel_cassette_tape", default=None
)


class Cassette:
    """A cassette directory, for recording (``record=True``) or replaying."""

    def __init__(self, directory: Path, *, record: bool) -> None:
        self.directory = directory
        self.record = record
        self._lock = threading.Lock()
        if record:
            (directory / "incidents").mkdir(parents=True, exist_ok=True)
            (directory / "tools").mkdir(parents=True, exist_ok=True)
        elif not (directory / "incidents").is_dir():
            raise CassetteMissError(f"{directory} is not a cassette (no incidents/ directory)")

    def tape(self, notification: IncidentNotification) -> IncidentTape:
        key = incident_key(notification)
        if self.record:
            return IncidentTape(key)
        path = self.directory / "incidents" / f"{key}.json"
        if not path.exists():
            raise CassetteMissError(f"the cassette has no recording of incident {key}")
        data = json.loads(path.read_text())
        return IncidentTape(key, model=list(data["model"]), tools=list(data["tools"]))

    def save(self, tape: IncidentTape) -> None:
        path = self.directory / "incidents" / f"{tape.key}.json"
        document = {"model": tape.model, "tools": tape.tools}
        path.write_text(json.dumps(document, indent=1, sort_keys=True, default=str) + "\n")

    def save_tools(self, server: str, tools: list[McpTool]) -> None:
        with self._lock:
            dumped = [tool.model_dump(mode="json", by_alias=True) for tool in tools]
            path = self.directory / "tools" / f"{server}.json"
            path.write_text(json.dumps(dumped, indent=1, sort_keys=True) + "\n")

    def load_tools(self, server: str) -> list[McpTool]:
        path = self.directory / "tools" / f"{server}.json"
        if not path.exists():
            raise CassetteMissError(f"the cassette has no tool list for MCP server {server!r}")
        return [McpTool.model_validate(tool) for tool in json.loads(path.read_text())]


def _tape() -> IncidentTape:
    tape = current_tape.get()
    if tape is None:
        raise CassetteMissError("a model or tool call outside any incident")
    return tape


def _dump_response(response: ModelResponse) -> dict[str, Any]:
    return {
        "output": [item.model_dump(mode="json") for item in response.output],
        "usage": {
            "requests": response.usage.requests,
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "total_tokens": response.usage.total_tokens,
        },
        "response_id": response.response_id,
    }


def _load_response(data: dict[str, Any]) -> ModelResponse:
    usage = data["usage"]
    return ModelResponse(
        output=_OUTPUT_ITEMS.validate_python(data["output"]),
        usage=Usage(
            requests=usage["requests"],
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            total_tokens=usage["total_tokens"],
        ),
        response_id=data.get("response_id"),
    )


class RecordingModel(Model):
    """Calls the real model and appends each response to the current incident's tape."""

    def __init__(self, inner: Model) -> None:
        self._inner = inner

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response = await self._inner.get_response(*args, **kwargs)
        _tape().model.append(_dump_response(response))
        return response

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("replay runs the agent without streaming")


class CassetteModel(Model):
    """Answers from the current incident's tape, in order; never touches the network."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        tape = _tape()
        if tape.model_cursor >= len(tape.model):
            raise CassetteMissError(
                f"the cassette of incident {tape.key} has {len(tape.model)} model response(s); "
                "the run asked for more (the prompt or the validators changed the run)"
            )
        response = tape.model[tape.model_cursor]
        tape.model_cursor += 1
        return _load_response(response)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("replay runs the agent without streaming")


def recording_server_class(base: type[Any], cassette: Cassette) -> type[Any]:
    """``base`` (an SDK MCP server class) that also records tool lists and results."""

    class Recording(base):  # type: ignore[misc]
        async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[McpTool]:
            if not getattr(self, "_cassette_saved", False) and self.session is not None:
                # The whole list, before the per-card filter, straight from the session.
                listed = await self.session.list_tools()
                cassette.save_tools(self.name, list(listed.tools))
                self._cassette_saved = True
            tools: list[McpTool] = await super().list_tools(run_context, agent)
            return tools

        async def call_tool(
            self, tool_name: str, arguments: dict[str, Any] | None, meta: Any = None
        ) -> CallToolResult:
            result: CallToolResult = await super().call_tool(tool_name, arguments, meta)
            _tape().tools.append(
                {
                    "server": self.name,
                    "tool": tool_name,
                    "arguments": arguments or {},
                    "result": result.model_dump(mode="json", by_alias=True),
                }
            )
            return result

    Recording.__name__ = f"Recording{base.__name__}"
    return Recording


def cassette_server_class(base: type[Any], cassette: Cassette) -> type[Any]:
    """``base`` with its transport replaced by the cassette: no process, no connection."""

    class Replaying(base):  # type: ignore[misc]
        async def connect(self) -> None:
            self._cassette_tools = cassette.load_tools(self.name)

        async def cleanup(self) -> None:
            return None

        async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[McpTool]:
            tools: list[McpTool] = list(self._cassette_tools)
            if run_context is not None and agent is not None:
                filtered: list[McpTool] = await self._apply_tool_filter(tools, run_context, agent)
                return filtered
            return tools

        async def call_tool(
            self, tool_name: str, arguments: dict[str, Any] | None, meta: Any = None
        ) -> CallToolResult:
            tape = _tape()
            wanted = arguments or {}
            for index, entry in enumerate(tape.tools):
                if index in tape.used_tools:
                    continue
                if (entry["server"], entry["tool"], entry["arguments"]) == (
                    self.name,
                    tool_name,
                    wanted,
                ):
                    tape.used_tools.add(index)
                    return CallToolResult.model_validate(entry["result"])
            raise CassetteMissError(
                f"the cassette of incident {tape.key} has no result for {self.name}.{tool_name} "
                f"with arguments {json.dumps(wanted, sort_keys=True)}"
            )

    Replaying.__name__ = f"Cassette{base.__name__}"
    return Replaying
