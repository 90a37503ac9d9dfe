"""`lantern mcp list`: the MCP servers in mcp.json, each with its state and tools, so they can be checked without
the window. Only the servers the user enabled are started (and stopped again when the command ends)."""
from __future__ import annotations

import concurrent.futures

from app.tools.mcp_config import config_path
from app.tools.mcp_host import FAILED, McpHost
from cli.table import print_table
from models.library import data_dir


def run_mcp(args) -> int:
    path = config_path(data_dir())
    host = McpHost(path, start_timeout=args.timeout)
    try:
        if not host.servers():
            print(f"No MCP servers are configured: add them in the window (Tools), or write {path} in the "
                  'mcpServers shape that LM Studio, Claude Desktop and Cursor use.')
            return 0
        futures = host.start_enabled()
        concurrent.futures.wait(futures, timeout=args.timeout + 15)
        rows = []
        for s in host.servers():
            status = s.status if s.config.enabled or s.status == FAILED else "off (not enabled)"
            tools = ", ".join(t.name + (" (not offered)" if t.problem else "") for t in s.tools[:40])
            if len(s.tools) > 40:
                tools += f", and {len(s.tools) - 40} more"
            transport = "-" if s.config.problem else s.config.transport
            rows.append((s.name, transport, status, s.why or s.note or tools or "-"))
        print_table(("server", "transport", "state", "tools, or why it failed"), rows)
        for s in host.servers():
            if s.resources or s.prompts:
                print(f"{s.name}: {len(s.resources)} resources, {len(s.prompts)} prompts")
            if not s.config.problem:
                print(f"{s.name} runs: {s.config.shown()}")
        return 1 if any(s.status == FAILED for s in host.servers()) else 0
    finally:
        host.close()
