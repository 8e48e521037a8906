"""Shared fixtures: the real Alertmanager payloads and a few builders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_sentinel.models import IncidentNotification, WebhookPayload

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "alertmanager"


def _fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"the Alertmanager fixtures are missing: expected them in {FIXTURES}")
    return FIXTURES


@pytest.fixture
def fixture_bytes() -> Callable[[str], bytes]:
    """``fixture_bytes("webhook_firing_single_alert")`` -> the captured body, byte for byte."""

    def load(name: str) -> bytes:
        return (_fixtures_dir() / f"{name}.json").read_bytes()

    return load


@pytest.fixture
def fixture_json(fixture_bytes: Callable[[str], bytes]) -> Callable[[str], Any]:
    def load(name: str) -> Any:
        return json.loads(fixture_bytes(name))

    return load


@pytest.fixture
def notifications(
    fixture_bytes: Callable[[str], bytes],
) -> Callable[[str], list[IncidentNotification]]:
    def load(name: str) -> list[IncidentNotification]:
        return WebhookPayload.model_validate_json(fixture_bytes(name)).notifications()

    return load
