"""Shared fixtures: the real Alertmanager payloads and a few builders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_sentinel.models import IncidentNotification, WebhookPayload

REPO_ROOT = Path(__file__).resolve().parent.parent
# The payloads captured from a real Alertmanager live in ../shared beside the repository; a
# copy travels with it (tests/fixtures), so a clone anywhere runs the suite. When both are
# there the original is used, and tests/test_fixture_copy.py fails if the copy drifted.
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "alertmanager"
BUNDLED_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "alertmanager"
FIXTURES = SHARED_FIXTURES if SHARED_FIXTURES.is_dir() else BUNDLED_FIXTURES


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
