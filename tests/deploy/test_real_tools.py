"""The Prometheus and Alertmanager configs checked by the real ``promtool`` and ``amtool``
(Debian packages ``prometheus`` and ``prometheus-alertmanager``); skipped, saying why, where
they are not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import DEPLOY

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
RUN_WITHIN = 60
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: apt-get install prometheus (.ci/run does it)"
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool not found: apt-get install prometheus-alertmanager (.ci/run does it)",
)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=RUN_WITHIN, check=False)


@needs_promtool
def test_promtool_accepts_the_config_and_rules() -> None:
    assert PROMTOOL is not None and RULES
    result = run(PROMTOOL, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rule files found" in result.stdout
    result = run(PROMTOOL, "check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_demo_alert_fires_at_start(tmp_path: Path) -> None:
    """``promtool test rules``: SentinelDemoAlwaysFiring fires at the first evaluation."""
    assert PROMTOOL is not None
    tests = {
        "rule_files": [str(path) for path in RULES],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [],
                "alert_rule_test": [
                    {
                        "eval_time": "0s",
                        "alertname": "SentinelDemoAlwaysFiring",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "info", "demo": "true"},
                                "exp_annotations": _annotations("SentinelDemoAlwaysFiring"),
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "demo_test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = run(PROMTOOL, "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
def test_amtool_accepts_the_alertmanager_config() -> None:
    assert AMTOOL is not None
    result = run(AMTOOL, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 receivers" in result.stdout


def _annotations(alert: str) -> dict[str, str]:
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    return dict(rule.get("annotations") or {})
    raise AssertionError(f"no rule {alert}")
