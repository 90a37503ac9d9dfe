"""A catalog entry in words for its details view: who made it, what it is, what it can do, its license and its
tool-call format. Built from the entry's own figures, so it never claims what the catalog does not know."""
from __future__ import annotations

from models.catalog import CatalogEntry
from runtimes.llama_mtp import ASSISTANT_TARGETS

MAKERS = {"qwen": "Alibaba's Qwen team", "gemma": "Google", "embeddinggemma": "Google", "gpt-oss": "OpenAI",
          "ministral": "Mistral AI", "devstral": "Mistral AI", "glm": "Z.ai", "nemotron": "NVIDIA",
          "lfm": "Liquid AI", "granite": "IBM", "nomic": "Nomic AI", "bge": "BAAI"}
TOOLS = {"qwen3-coder": "Qwen3-Coder's XML calls", "hermes": "Hermes-style <tool_call> JSON",
         "harmony": "OpenAI's harmony channels", "mistral-args": "Mistral's [TOOL_CALLS] with arguments",
         "mistral": "Mistral's [TOOL_CALLS] list", "llama3": "Llama 3's JSON calls",
         "generic": "no format of its own: Lantern asks for JSON and reads it (works, less reliably)"}
LICENSES = {"apache-2.0": "Apache 2.0: free to use, change and sell", "mit": "MIT: free to use, change and sell",
            "gemma": "Gemma terms of use: free to use, with a prohibited-use policy",
            "lfm1.0": "LFM Open License 1.0: free below a revenue threshold",
            "nvidia-open-model-license": "NVIDIA Open Model License: free to use and sell"}


def maker(entry: CatalogEntry) -> str:
    return next((who for prefix, who in MAKERS.items() if entry.family.startswith(prefix)), "")


def description(entry: CatalogEntry) -> str:
    """Two or three sentences: what it is, how big it runs, what it can do."""
    who = maker(entry)
    kind = "chat model" if entry.kind == "chat" else "embedding model (text to vectors, for search)"
    text = f"A {entry.params_b:g}B-parameter {kind}" + (f" from {who}" if who else "") + "."
    if entry.active_b < entry.params_b:
        text += (f" Each token uses {entry.active_b:g}B of them, so it writes about as fast as a {entry.active_b:g}B "
                 "model, but needs the memory for all of them.")
    can = [x for x, on in (("thinks before it answers", entry.reasoning), ("reads images", entry.vision),
                           ("calls tools", entry.kind == "chat" and bool(entry.tools))) if on]
    if can:
        text += " It " + (", ".join(can[:-1]) + " and " + can[-1] if len(can) > 1 else can[0]) + "."
    if entry.mtp_layers > 0:
        text += " Its file carries multi-token-prediction heads: it drafts its own next tokens."
    elif entry.architecture in ASSISTANT_TARGETS:
        text += " Its multi-token-prediction heads come as a separate assistant model, which drafts for it."
    if entry.format == "mlx":
        text += " MLX format: for Apple silicon."
    return text


def mtp_in_words(entry: CatalogEntry) -> str:
    if entry.architecture in ASSISTANT_TARGETS:  # Gemma 4: the heads ship as a model of their own
        base = entry.repo.rsplit("/", 1)[-1].removesuffix("-GGUF")
        return (f"in a separate model, Google's {base}-assistant: a GGUF of it in this model's folder (or its MTP "
                "folder), or chosen under Chat settings → Draft with, drafts as its heads (auto: on a GPU)")
    if entry.mtp_layers > 0:
        return (f"yes ({entry.mtp_layers} block{'s' * (entry.mtp_layers > 1)}): they draft tokens the model checks "
                "in one step (Chat settings → MTP heads; auto: on a GPU)")
    if entry.mtp_layers == 0:
        return "no"
    return "not known until its file is read from the Hub"


def tools_in_words(entry: CatalogEntry) -> str:
    if entry.kind != "chat":
        return "none (an embedding model)"
    return TOOLS.get(entry.tools, f"its own format ({entry.tools})" if entry.tools else "none")


def license_in_words(entry: CatalogEntry) -> str:
    return LICENSES.get(entry.license, entry.license)


def draft_suggestion(entry: CatalogEntry, catalog: list[CatalogEntry]) -> CatalogEntry | None:
    """The catalog's smallest chat GGUF of `entry`'s family, a quarter of its size or less: the model that can draft
    tokens for it (a family shares its tokenizer; the load checks the vocabularies exactly). None where there is none,
    or `entry` is not a GGUF chat model."""
    if entry.kind != "chat" or entry.format != "gguf":
        return None
    small = [e for e in catalog if e.family == entry.family and e.kind == "chat" and e.format == "gguf"
             and e.name != entry.name and e.params_b * 4 <= entry.params_b]
    return min(small, key=lambda e: e.params_b, default=None)


def draft_in_words(entry: CatalogEntry, catalog: list[CatalogEntry]) -> str:
    found = draft_suggestion(entry, catalog)
    if found is None:
        return "none in the catalog"
    return (f"{found.name} ({found.params_b:g}B, same family): download both, then Chat settings → Draft with "
            "(used where drafting pays: on a GPU)")
