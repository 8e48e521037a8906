"""The validator pipeline, bridged into the SDK's tool guardrails for one MCP server.

Before a call runs, ``check_input`` validates it (server, tool, arguments, mutating or not);
a refusal reaches the model as that tool's result, saying it was refused and why, and the run
goes on. After the call, ``check_output`` validates what the tool returned (injection,
secrets) and bounds it to ``max_output_chars``; the model sees only the validated text.
Every decision lands in the run's facts, and from there in the audit record.
"""

from __future__ import annotations

import json
import time
from typing import Any

from agents import (
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)
from agents.mcp.util import MCPToolCustomDataContext

from mcp_sentinel.agent.context import InvestigationContext, public_tool_name
from mcp_sentinel.agent.decisions import record_decisions
from mcp_sentinel.models import ToolCallRecord
from mcp_sentinel.validators.actions import ToolCall, ToolOutput
from mcp_sentinel.validators.pipeline import ValidatorPipeline

# The SDK turns a failing MCP call into a message for the model that starts like this.
SDK_TOOL_ERROR_PREFIX = "An error occurred while running"


def _part_text(part: object) -> str:
    if isinstance(part, dict):
        return str(part.get("text", json.dumps(part, default=str)))
    return str(getattr(part, "text", part))


def result_text(result: object) -> str:
    """An MCP tool result (a string, one content part, or a list of them) as plain text."""
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        return _part_text(result)
    if isinstance(result, list):
        return "\n".join(_part_text(part) for part in result)
    return str(result)


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with a note the model can read."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return (
        f"{text[:limit]}\n[sentinel: output truncated, {cut} of {len(text)} characters cut; "
        "narrow the query to see more]"
    )


def parse_arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"_unparsed": raw}
    return value if isinstance(value, dict) else {"_value": value}


class ToolGuard:
    """Guardrails for one MCP server's tools. Shared by every incident; per-run state comes
    from the ``InvestigationContext`` the SDK hands each guardrail."""

    def __init__(
        self,
        server: str,
        *,
        read_only_tools: frozenset[str],
        max_output_chars: int,
        pipeline: ValidatorPipeline,
    ) -> None:
        self._server = server
        self._read_only = read_only_tools
        self._max_output_chars = max_output_chars
        self._pipeline = pipeline
        self._prefix = public_tool_name(server, "")

    def is_mutating(self, tool: str) -> bool:
        return tool not in self._read_only

    def tool_name(self, public_name: str) -> str:
        return public_name.removeprefix(self._prefix)

    def input_guardrails(self) -> list[ToolInputGuardrail[Any]]:
        return [ToolInputGuardrail(self.check_input, name=f"sentinel-input-{self._server}")]

    @staticmethod
    def note_result(context: MCPToolCustomDataContext) -> None:
        """The server's ``custom_data_extractor``: notes whether the MCP result was an error,
        for ``check_output`` (which the SDK calls next, without that flag)."""
        run = getattr(context.run_context, "context", None)
        call_id = getattr(context.run_context, "tool_call_id", None)
        if isinstance(run, InvestigationContext) and call_id is not None:
            run.facts.tool_errors[str(call_id)] = bool(context.is_error)

    def output_guardrails(self) -> list[ToolOutputGuardrail[Any]]:
        return [ToolOutputGuardrail(self.check_output, name=f"sentinel-output-{self._server}")]

    async def check_input(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        run: InvestigationContext = data.context.context
        tool = self.tool_name(data.context.tool_name)
        raw_arguments = data.context.tool_arguments or ""
        action = ToolCall(
            card=run.card.resource,
            incident_id=run.validation.incident_id,
            server=self._server,
            tool=tool,
            arguments=parse_arguments(raw_arguments),
            mutating=self.is_mutating(tool),
        )
        result = await self._pipeline.run(action, run.validation)
        run.facts.decisions.extend(result.decisions)
        record_decisions(result.decisions)
        reason = result.rejected
        if reason is None and result.action != action:
            # The SDK cannot change a call's arguments, so a changed call is not run at all.
            reason = "a validator changed the arguments, and changed calls are not run"
        if reason is None:
            return ToolGuardrailFunctionOutput.allow()
        call_id = str(data.context.tool_call_id)
        run.facts.tool_calls[call_id] = ToolCallRecord(
            tool=tool,
            server=self._server,
            arguments=raw_arguments,
            result=reason,
            status="refused",
        )
        return ToolGuardrailFunctionOutput.reject_content(
            f"[sentinel] The call to {tool} was refused and did not run: {reason}. "
            "Do not retry it; continue with the other tools, or recommend the action to the "
            "on-call engineer."
        )

    async def check_output(self, data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        run: InvestigationContext = data.context.context
        tool = self.tool_name(data.context.tool_name)
        original = result_text(data.output)
        call_id = str(data.context.tool_call_id)
        is_error = run.facts.tool_errors.pop(call_id, False) or original.startswith(
            SDK_TOOL_ERROR_PREFIX
        )
        action = ToolOutput(
            card=run.card.resource,
            incident_id=run.validation.incident_id,
            server=self._server,
            tool=tool,
            output=original,
            is_error=is_error,
        )
        result = await self._pipeline.run(action, run.validation)
        run.facts.decisions.extend(result.decisions)
        record_decisions(result.decisions)
        if result.rejected is not None:
            shown = f"[sentinel] The output of {tool} was withheld: {result.rejected}"
        else:
            checked = result.action
            shown = checked.output if isinstance(checked, ToolOutput) else original
        shown = bounded(shown, self._max_output_chars)
        run.facts.seen_texts.append(shown)
        record = run.facts.tool_calls.get(call_id)
        if record is not None:
            record.result = shown
            record.status = "error" if action.is_error else "ok"
            started = run.facts.tool_started.pop(call_id, None)
            if started is not None:
                record.duration_seconds = round(time.monotonic() - started, 6)
        self._pipeline.observe(f"mcp:{self._server}", not action.is_error)
        if shown == original:
            return ToolGuardrailFunctionOutput.allow()
        # The SDK offers no "replace the output" verdict; reject_content sends our text to
        # the model in place of the tool's output, which is exactly that.
        return ToolGuardrailFunctionOutput.reject_content(shown)
