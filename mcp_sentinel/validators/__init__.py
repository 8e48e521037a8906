"""The synchronous validator pipeline between the agent and the world."""
