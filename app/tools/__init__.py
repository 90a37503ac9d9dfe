"""Tools the model can call from the window: MCP servers the user configured, and Lantern's own."""
