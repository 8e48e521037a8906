"""The repository's copy of the captured Alertmanager payloads matches the shared original."""

from __future__ import annotations

import pytest

from tests.conftest import BUNDLED_FIXTURES, SHARED_FIXTURES


@pytest.mark.skipif(
    not SHARED_FIXTURES.is_dir(),
    reason=f"no shared fixtures beside this clone ({SHARED_FIXTURES}): only the copy to use",
)
def test_the_bundled_fixtures_are_the_shared_ones_byte_for_byte() -> None:
    shared = {path.name: path.read_bytes() for path in SHARED_FIXTURES.glob("*.json")}
    bundled = {path.name: path.read_bytes() for path in BUNDLED_FIXTURES.glob("*.json")}
    assert shared, f"{SHARED_FIXTURES} holds no fixture"
    assert sorted(bundled) == sorted(shared), "copy tests/fixtures/alertmanager from ../shared"
    changed = [name for name in shared if bundled[name] != shared[name]]
    assert not changed, f"tests/fixtures/alertmanager differs from ../shared in {changed}"
