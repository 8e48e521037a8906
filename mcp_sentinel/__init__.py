"""mcp_sentinel: an incident-response daemon beside Prometheus and Alertmanager."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mcp-sentinel")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
