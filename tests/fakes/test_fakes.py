"""Real-wire checks of the fakes: openai 3.x client, openai-agents Runner, MCP over stdio."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.mcp import MCPServerStdio
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel

from .mcp_stdio_server import SERVER_PATH, TOOL_NAMES
from .openai_server import (
    Delay,
    FakeOpenAI,
    FinalJSON,
    FinalText,
    HttpError,
    Step,
    ToolCall,
    ToolCalls,
    offered_tool_names,
)

USER_MSG: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)
    yield


def client(fake: FakeOpenAI, max_retries: int = 0) -> AsyncOpenAI:
    """An openai 3.x client for the fake; use with ``async with`` so its pool is closed."""
    return AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=max_retries)


def function_calls(r: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = r.choices[0].message.tool_calls or []
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stdio_server(log: Path, name: str = "ops") -> MCPServerStdio:
    return MCPServerStdio(
        params={"command": sys.executable, "args": [str(SERVER_PATH), "--log", str(log)]},
        name=name,
        client_session_timeout_seconds=30,
    )


class Verdict(BaseModel):
    status: str
    evidence: str


# -- FakeOpenAI with the raw openai client ---------------------------------------------------


async def test_tool_call_shape_and_request_recording() -> None:
    steps: list[Step] = [ToolCall("lookup", {"host": "app-01"}), FinalText("done")]
    async with FakeOpenAI(steps) as fake, client(fake) as c:
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert fake.base_url.endswith("/v1")
        r = await c.chat.completions.create(model="gpt-test", messages=USER_MSG)
        assert r.object == "chat.completion"
        assert r.model == "gpt-test"
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.role == "assistant"
        assert choice.message.content is None
        (call,) = function_calls(r)
        assert call.type == "function"
        assert call.function.name == "lookup"
        assert json.loads(call.function.arguments) == {"host": "app-01"}
        assert r.usage is not None
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

        r2 = await c.chat.completions.create(model="other-model", messages=USER_MSG)
        assert r2.choices[0].finish_reason == "stop"
        assert r2.choices[0].message.content == "done"
        assert r2.model == "other-model"

        assert fake.remaining == 0
        assert len(fake.requests) == 2
        first = fake.requests[0]
        assert (first.method, first.path) == ("POST", "/v1/chat/completions")
        assert first.headers["authorization"] == "Bearer sk-test"
        assert first.body["messages"] == USER_MSG
        assert fake.bodies[1]["model"] == "other-model"


async def test_multiple_tool_calls_and_final_json() -> None:
    steps: list[Step] = [
        ToolCalls([ToolCall("a", {"x": 1}), ToolCall("b", {}, id="call_fixed")]),
        FinalJSON({"status": "ok", "n": 2}),
    ]
    async with FakeOpenAI(steps) as fake, client(fake) as c:
        r = await c.chat.completions.create(model="m", messages=USER_MSG)
        calls = function_calls(r)
        assert [(tc.function.name, tc.function.arguments) for tc in calls] == [
            ("a", '{"x": 1}'),
            ("b", "{}"),
        ]
        assert calls[1].id == "call_fixed"
        assert calls[0].id != calls[1].id
        r2 = await c.chat.completions.create(model="m", messages=USER_MSG)
        assert json.loads(r2.choices[0].message.content or "") == {"status": "ok", "n": 2}


async def test_callable_step_sees_offered_tools_and_delay_waits() -> None:
    def pick(req: dict[str, Any]) -> Step:
        names = offered_tool_names(req)
        return ToolCall(next(n for n in names if n.endswith("__query")), {"promql": "up"})

    tools: Any = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("mcp_ops__get_logs", "mcp_ops__query")
    ]
    async with FakeOpenAI([Delay(0.3, then=pick)]) as fake, client(fake) as c:
        started = time.monotonic()
        r = await c.chat.completions.create(model="m", messages=USER_MSG, tools=tools)
        assert time.monotonic() - started >= 0.3
        (call,) = function_calls(r)
        assert call.function.name == "mcp_ops__query"
        assert offered_tool_names(fake.bodies[0]) == ["mcp_ops__get_logs", "mcp_ops__query"]


async def test_delay_provokes_client_timeout_without_blocking_shutdown() -> None:
    started = time.monotonic()
    async with FakeOpenAI([Delay(30, then=FinalText("too late"))]) as fake:
        c = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=0.3)
        async with c:
            with pytest.raises(openai.APITimeoutError):
                await c.chat.completions.create(model="m", messages=USER_MSG)
    assert time.monotonic() - started < 5


async def test_http_errors_are_openai_errors() -> None:
    custom = {"error": {"message": "nope", "type": "invalid_request_error", "code": "bad"}}
    steps: list[Step] = [HttpError(401), HttpError(400, body=custom)]
    async with FakeOpenAI(steps) as fake, client(fake) as c:
        with pytest.raises(openai.AuthenticationError) as auth:
            await c.chat.completions.create(model="m", messages=USER_MSG)
        assert auth.value.status_code == 401
        assert auth.value.code == "invalid_api_key"
        with pytest.raises(openai.BadRequestError) as bad:
            await c.chat.completions.create(model="m", messages=USER_MSG)
        assert bad.value.code == "bad"
        assert "nope" in bad.value.message


async def test_retry_after_is_honoured_by_client_retries() -> None:
    steps: list[Step] = [HttpError(429, retry_after=0.2), FinalText("after retry")]
    async with FakeOpenAI(steps) as fake, client(fake, max_retries=1) as c:
        started = time.monotonic()
        r = await c.chat.completions.create(model="m", messages=USER_MSG)
        assert time.monotonic() - started >= 0.2
        assert r.choices[0].message.content == "after retry"
        assert len(fake.requests) == 2
        assert fake.requests[1].headers["x-stainless-retry-count"] == "1"


async def test_stream_rejected_and_exhausted_script_fails_loudly() -> None:
    async with FakeOpenAI([]) as fake, client(fake, max_retries=2) as c:
        with pytest.raises(openai.BadRequestError, match="stream"):
            await c.chat.completions.create(model="m", messages=USER_MSG, stream=True)
        with pytest.raises(openai.InternalServerError, match="exhausted"):
            await c.chat.completions.create(model="m", messages=USER_MSG)
        # x-should-retry: false stops the client's automatic retries.
        assert len(fake.requests) == 2


async def test_bad_json_and_unknown_route_get_openai_error_bodies() -> None:
    async with FakeOpenAI([FinalText("unused")]) as fake, aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/chat/completions", data=b"not json") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
        async with http.get(f"{fake.base_url}/models") as resp:
            assert resp.status == 404
            assert "Unknown route" in (await resp.json())["error"]["message"]
        assert [r.body for r in fake.requests] == [None, None]
        assert fake.remaining == 1


# -- FakeOpenAI with openai-agents -----------------------------------------------------------


async def test_agents_runner_function_tool_then_final_json() -> None:
    seen: list[str] = []

    @function_tool
    def check_host(host: str) -> str:
        """Check whether a host answers."""
        seen.append(host)
        return f"{host} is unreachable"

    steps: list[Step] = [
        ToolCall("check_host", {"host": "app-01"}),
        FinalJSON({"status": "down", "evidence": "app-01 is unreachable"}),
    ]
    async with FakeOpenAI(steps) as fake, client(fake) as c:
        agent = Agent(
            name="triage",
            instructions="Investigate.",
            model=OpenAIChatCompletionsModel(model="gpt-test", openai_client=c),
            tools=[check_host],
            output_type=Verdict,
        )
        result = await Runner.run(agent, "is app-01 up?", run_config=RunConfig())

        assert seen == ["app-01"]
        assert result.final_output == Verdict(status="down", evidence="app-01 is unreachable")
        assert len(fake.requests) == 2
        assert offered_tool_names(fake.bodies[0]) == ["check_host"]
        assert fake.bodies[0]["response_format"]["type"] == "json_schema"
        tool_msgs = [m for m in fake.bodies[1]["messages"] if m["role"] == "tool"]
        assert [m["content"] for m in tool_msgs] == ["app-01 is unreachable"]


# -- MCP stdio server --------------------------------------------------------------------------


async def test_mcp_stdio_server_lists_and_runs_tools(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    async with stdio_server(log) as server:
        tools = await server.list_tools()
        assert sorted(t.name for t in tools) == sorted(TOOL_NAMES)
        assert all(t.description for t in tools)

        r = await server.call_tool("query", {"promql": "up"})
        assert not r.is_error
        text = r.content[0].text
        assert 'up{instance="app-01.example.internal:8080", job="checkout"} => 0' in text
        r = await server.call_tool("query", {"promql": "rate(errors_total[5m])"})
        assert "0.42" in r.content[0].text

        r = await server.call_tool("get_logs", {"service": "checkout", "lines": 3})
        assert len(r.content[0].text.splitlines()) == 3
        r = await server.call_tool("restart_service", {"service": "checkout"})
        assert r.content[0].text == "restarted checkout"
        r = await server.call_tool("fail", {"message": "disk on fire"})
        assert r.is_error
        assert "disk on fire" in r.content[0].text

    assert read_log(log) == [
        {"tool": "query", "arguments": {"promql": "up"}},
        {"tool": "query", "arguments": {"promql": "rate(errors_total[5m])"}},
        {"tool": "get_logs", "arguments": {"service": "checkout", "lines": 3}},
        {"tool": "restart_service", "arguments": {"service": "checkout"}},
        {"tool": "fail", "arguments": {"message": "disk on fire"}},
    ]


async def test_agent_with_mcp_stdio_tools_end_to_end(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    steps: list[Step] = [
        ToolCall("mcp_ops__query", {"promql": "up"}),
        FinalJSON({"status": "down", "evidence": "up == 0 on app-01"}),
    ]
    async with stdio_server(log) as server, FakeOpenAI(steps) as fake, client(fake) as c:
        agent = Agent(
            name="triage",
            instructions="Investigate.",
            model=OpenAIChatCompletionsModel(model="gpt-test", openai_client=c),
            mcp_servers=[server],
            mcp_config={"include_server_in_tool_names": True},
            output_type=Verdict,
        )
        result = await Runner.run(agent, "checkout is down", run_config=RunConfig())

    assert result.final_output == Verdict(status="down", evidence="up == 0 on app-01")
    assert read_log(log) == [{"tool": "query", "arguments": {"promql": "up"}}]
    assert sorted(offered_tool_names(fake.bodies[0])) == sorted(
        f"mcp_ops__{name}" for name in TOOL_NAMES
    )
    messages = fake.bodies[1]["messages"]
    call_id = next(m for m in messages if m.get("tool_calls"))["tool_calls"][0]["id"]
    (tool_msg,) = [m for m in messages if m["role"] == "tool"]
    assert tool_msg["tool_call_id"] == call_id
    assert "app-01.example.internal:8080" in json.dumps(tool_msg["content"])


async def test_agent_sees_mcp_tool_failure_as_data(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    steps: list[Step] = [
        ToolCall("mcp_ops__fail", {"message": "disk on fire"}),
        FinalJSON({"status": "unknown", "evidence": "tool failed"}),
    ]
    async with stdio_server(log) as server, FakeOpenAI(steps) as fake, client(fake) as c:
        agent = Agent(
            name="triage",
            model=OpenAIChatCompletionsModel(model="gpt-test", openai_client=c),
            mcp_servers=[server],
            mcp_config={"include_server_in_tool_names": True},
            output_type=Verdict,
        )
        result = await Runner.run(agent, "checkout is down", run_config=RunConfig())

    assert result.final_output == Verdict(status="unknown", evidence="tool failed")
    assert read_log(log) == [{"tool": "fail", "arguments": {"message": "disk on fire"}}]
    (tool_msg,) = [m for m in fake.bodies[1]["messages"] if m["role"] == "tool"]
    # MCP results reach the model as a list of content parts, not a plain string.
    error_text = "Error executing tool fail: disk on fire"
    assert tool_msg["content"] == [{"type": "text", "text": error_text}]
