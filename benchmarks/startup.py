"""Start-up: time from ``sentinel run`` (a subprocess) to ``/readyz`` 200, median of a few runs,
then to the daemon's "agent ready" log line (the SDK loads after intake is up), and
``python -c "import agents"`` alone in the same run as a baseline.

Each run also starts the daemon uncompiled, between the compiled starts: with a bytecode cache
prefix (``PYTHONPYCACHEPREFIX``) that holds the standard library's bytecode and nothing else, so
the environment's packages and the project are compiled from source at that start, as they are
at every start of an environment installed without bytecode wherever Python may not write its
cache (``PYTHONDONTWRITEBYTECODE``, a read-only install).

    uv run python benchmarks/startup.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    MATCH_ALL_CARD,
    PY,
    ROOT,
    emit,
    stop_on_signals,
    stop_process,
    wait_http_ok,
)
from tests.helpers import free_port, write_config

SENTINEL = Path(PY).parent / "sentinel"


def one_start(directory: Path, env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """Seconds to ``/readyz`` 200, and to the agent being loaded; ``env`` for the daemon's
    environment (this process's by default)."""
    port = free_port()
    write_config(
        directory,
        overrides={"incident_cards": [MATCH_ALL_CARD]},
    )
    config = directory / "config.yaml"
    text = config.read_text().replace("port: 0", f"port: {port}")
    config.write_text(text)
    started = time.perf_counter()
    log = (directory / "daemon.log").open("w")
    proc = subprocess.Popen(
        [str(SENTINEL), "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
    )
    try:
        if not wait_http_ok(f"http://127.0.0.1:{port}/readyz", within=60):
            raise RuntimeError((directory / "daemon.log").read_text()[-2000:])
        ready = time.perf_counter() - started
        deadline = time.monotonic() + 60
        while "agent ready" not in (directory / "daemon.log").read_text():
            if time.monotonic() > deadline:
                raise RuntimeError((directory / "daemon.log").read_text()[-2000:])
            time.sleep(0.01)
        return ready, time.perf_counter() - started
    finally:
        stop_process(proc)


def stdlib_only_cache(prefix: Path) -> None:
    """Fill ``prefix`` as a ``PYTHONPYCACHEPREFIX`` tree holding the standard library's
    bytecode (links to the interpreter's own ``__pycache__`` files) and nothing else. Python
    looks for every module's bytecode under the prefix, at the module's absolute path."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])  # as sys.path names it: not resolved
    for cache in stdlib.rglob("__pycache__"):
        if "site-packages" in cache.parts:
            continue
        mirror = prefix / cache.parent.relative_to(cache.parent.anchor)
        mirror.mkdir(parents=True, exist_ok=True)
        for compiled in cache.glob("*.pyc"):
            (mirror / compiled.name).symlink_to(compiled)


def import_agents() -> float:
    started = time.perf_counter()
    subprocess.run([PY, "-c", "import agents"], check=True, timeout=60)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 runs")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    import_agents()  # warm the page cache and the bytecode, for both
    compiled_env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    ready: list[float] = []
    agent: list[float] = []
    imports: list[float] = []
    source_ready: list[float] = []
    source_agent: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sentinel-pycache-") as prefix:
        stdlib_only_cache(Path(prefix))
        source_env = {
            **compiled_env,
            "PYTHONPYCACHEPREFIX": prefix,
            "PYTHONDONTWRITEBYTECODE": "1",  # or the first uncompiled start fills the prefix
        }
        for index in range(runs):
            with tempfile.TemporaryDirectory(prefix="sentinel-startup-") as tmp:
                ready_s, agent_s = one_start(Path(tmp), compiled_env)
            with tempfile.TemporaryDirectory(prefix="sentinel-startup-") as tmp:
                source_ready_s, source_agent_s = one_start(Path(tmp), source_env)
            ready.append(ready_s)
            agent.append(agent_s)
            source_ready.append(source_ready_s)
            source_agent.append(source_agent_s)
            imports.append(import_agents())
            print(
                f"  run {index + 1}: ready {ready_s:.2f} s, agent loaded {agent_s:.2f} s, "
                f"import agents {imports[-1]:.2f} s; uncompiled: ready {source_ready_s:.2f} s, "
                f"agent loaded {source_agent_s:.2f} s"
            )
    ready_median = statistics.median(ready)
    source_ready_median = statistics.median(source_ready)
    import_median = statistics.median(imports)
    row = {
        "runs": runs,
        "ready_median_s": ready_median,
        "ready_all_s": ready,
        "agent_ready_median_s": statistics.median(agent),
        "import_agents_median_s": import_median,
        "import_agents_all_s": imports,
        "uncompiled_ready_median_s": source_ready_median,
        "uncompiled_ready_all_s": source_ready,
        "uncompiled_agent_ready_median_s": statistics.median(source_agent),
        "ratio": ready_median / import_median,
        "uncompiled_ratio": ready_median / source_ready_median,
    }
    print(
        f"sentinel run -> /readyz 200: median {row['ready_median_s']:.2f} s; "
        f"agent loaded: median {row['agent_ready_median_s']:.2f} s; "
        f'python -c "import agents": median {row["import_agents_median_s"]:.2f} s '
        f"({row['ratio']:.1f}x); uncompiled: ready median "
        f"{row['uncompiled_ready_median_s']:.2f} s, agent loaded median "
        f"{row['uncompiled_agent_ready_median_s']:.2f} s (compiled takes "
        f"{row['uncompiled_ratio']:.2f}x that to ready)",
        flush=True,
    )
    emit("startup", row)


if __name__ == "__main__":
    stop_on_signals()
    main()
