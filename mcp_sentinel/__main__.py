"""``python -m mcp_sentinel``: the same as the ``sentinel`` command."""

from mcp_sentinel.cli import main

main()
