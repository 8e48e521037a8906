"""The agent's output schema: what the model is asked for and how its answer is read are the
SDK's own for ``Finding``; only the object that carries them differs."""

from __future__ import annotations

import json

import pytest
from agents import AgentOutputSchema, ModelBehaviorError

from mcp_sentinel.agent.orchestrator import _FINDING_OUTPUT
from mcp_sentinel.models import Finding
from tests.helpers import FINDING


def test_the_model_is_asked_for_the_sdk_schema_of_a_finding() -> None:
    reference = AgentOutputSchema(Finding)
    assert _FINDING_OUTPUT.json_schema() == reference.json_schema()
    assert _FINDING_OUTPUT.is_strict_json_schema() is reference.is_strict_json_schema() is True
    assert _FINDING_OUTPUT.name() == reference.name()
    assert _FINDING_OUTPUT.is_plain_text() is False


def test_an_answer_is_read_as_a_finding_or_refused_as_the_sdk_refuses_it() -> None:
    finding = _FINDING_OUTPUT.validate_json(json.dumps(FINDING))
    assert isinstance(finding, Finding)
    assert finding.summary == FINDING["summary"]
    with pytest.raises(ModelBehaviorError, match="Invalid JSON"):
        _FINDING_OUTPUT.validate_json('{"summary": "no other field"}')
