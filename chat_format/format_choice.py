"""Which tool-call format a model speaks, read from its chat template."""
from __future__ import annotations

from chat_format.harmony import HARMONY
from chat_format.tool_formats import Generic, Hermes, Llama3, MistralArgs, MistralList, Qwen3Coder, ToolFormat


FORMATS = {f.name: f for f in (Hermes(), Llama3(), MistralList(), MistralArgs(), Qwen3Coder(), Generic())}


def detect(template_source: str, *, template_takes_tools: bool) -> ToolFormat:
    """The tool-call format of a model, from its chat template."""
    src = template_source
    if "<|channel|>" in src and "<|message|>" in src and "functions." in src:
        return HARMONY
    if not template_takes_tools:
        return FORMATS["generic"]
    if "<function=" in src and "<parameter=" in src:
        return FORMATS["qwen3-coder"]
    if "<tool_call>" in src:
        return FORMATS["hermes"]
    if "[TOOL_CALLS]" in src:
        return FORMATS["mistral-args"] if "[ARGS]" in src else FORMATS["mistral"]
    if "<|start_header_id|>" in src and '"parameters"' in src:
        return FORMATS["llama3"]
    return FORMATS["generic"]
