"""Start-up: time from ``sentinel run`` (a subprocess) to ``/readyz`` 200, median of a few runs,
then to the daemon's "agent ready" log line (the SDK loads after intake is up), and
``python -c "import agents"`` alone in the same run as a baseline.

    uv run python benchmarks/startup.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
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


def one_start(directory: Path) -> tuple[float, float]:
    """Seconds to ``/readyz`` 200, and to the agent being loaded."""
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
    ready, agent, imports = [], [], []
    for index in range(runs):
        with tempfile.TemporaryDirectory(prefix="sentinel-startup-") as tmp:
            ready_s, agent_s = one_start(Path(tmp))
        ready.append(ready_s)
        agent.append(agent_s)
        imports.append(import_agents())
        print(
            f"  run {index + 1}: ready {ready_s:.2f} s, agent loaded {agent_s:.2f} s, "
            f"import agents {imports[-1]:.2f} s"
        )
    row = {
        "runs": runs,
        "ready_median_s": statistics.median(ready),
        "ready_all_s": ready,
        "agent_ready_median_s": statistics.median(agent),
        "import_agents_median_s": statistics.median(imports),
        "import_agents_all_s": imports,
    }
    row["ratio"] = row["ready_median_s"] / row["import_agents_median_s"]
    print(
        f"sentinel run -> /readyz 200: median {row['ready_median_s']:.2f} s; "
        f"agent loaded: median {row['agent_ready_median_s']:.2f} s; "
        f'python -c "import agents": median {row["import_agents_median_s"]:.2f} s '
        f"({row['ratio']:.1f}x)",
        flush=True,
    )
    emit("startup", row)


if __name__ == "__main__":
    stop_on_signals()
    main()
