"""Built-in MCP toolsets the agent can use, each served by ``sentinel mcp <name>``.

- ``prometheus``: read-only Prometheus HTTP API tools (``prometheus_server``), built on
  ``prometheus_client`` (the HTTP API over aiohttp), ``summarise`` (series summaries),
  ``render`` (text for the model), ``bounds`` (output limits), ``units`` and ``timeparse``.

Nothing here imports the daemon: a toolset is a separate process the daemon talks MCP to.
"""
