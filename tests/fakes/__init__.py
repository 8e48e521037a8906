"""Real-wire test fakes: a Chat Completions HTTP server and an MCP stdio server."""
