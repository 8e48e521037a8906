"""The LLM agent: model providers, the MCP tool registry and the orchestrator."""
