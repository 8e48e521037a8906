"""The ``telemetry`` config section: logs, metrics and traces."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from mcp_sentinel.settings_base import Section

LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


class MetricsSettings(Section):
    enabled: bool = True


class TracingSettings(Section):
    """OpenTelemetry traces, exported over OTLP. Off by default, and then nothing is exported
    and no exporter can fail."""

    enabled: bool = False
    otlp_endpoint: str = Field(default="http://127.0.0.1:4318", pattern=r"^https?://")
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    service_name: str = Field(default="mcp-sentinel", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10, gt=0)


class TelemetrySettings(Section):
    log_level: LogLevel = "INFO"
    log_json: bool = False
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
