"""The first incident must not stop the event loop to import the model client's modules.

The openai client imports its chat resources, and anyio its asyncio backend, on first use:
on the loop, that stalled intake for 60-130 ms in the middle of a storm's first incident. The
daemon imports them on a thread while the agent loads. Checked in a fresh interpreter, since
this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO_ROOT

# Packages whose import on the loop would stall intake (tens of modules each).
HEAVY = ("openai", "anyio", "agents", "mcp", "httpx", "jiter", "pydantic")


def test_the_first_investigation_imports_nothing_heavy_on_the_loop(
    tmp_path: Path, fixture_bytes: Callable[[str], bytes]
) -> None:
    body = tmp_path / "alert.json"
    body.write_bytes(fixture_bytes("webhook_firing_single_alert"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.agent.first_incident_imports",
            str(tmp_path),
            str(body),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "completed"
    heavy = [name for name in result["imported"] if name.split(".")[0] in HEAVY]
    assert heavy == [], f"imported on the first incident: {heavy}"
