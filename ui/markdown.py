"""Replies as HTML for a QTextBrowser: Markdown (markdown-it-py) with code highlighted by Pygments.

Raw HTML in a reply is shown as text, never interpreted: a model's output cannot add links, images or
styles to the window. Each code block gets a "Copy" link (`copy-code:N`) that the view handles.
"""
from __future__ import annotations

import html
from functools import lru_cache

CODE_BG = {"light": "#f4f5f7", "dark": "#23252b"}
PYGMENTS_STYLE = {"light": "default", "dark": "monokai"}


@lru_cache(maxsize=2)
def _parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def _highlight(code: str, lang: str, theme: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang.strip() or "text", stripnl=False)
    except ClassNotFound:
        lexer = get_lexer_by_name("text", stripnl=False)
    formatter = HtmlFormatter(noclasses=True, nowrap=True, style=PYGMENTS_STYLE[theme])
    return highlight(code, lexer, formatter)  # spans with inline colours: what QTextBrowser understands


def render_markdown(text: str, *, theme: str = "light") -> tuple[str, list[str]]:
    """HTML for `text`, and the code blocks' text in order (what each copy link copies)."""
    md = _parser()
    blocks: list[str] = []
    tokens = md.parse(text)
    parts: list[str] = []
    start = 0
    for i, tok in enumerate(tokens):
        if tok.type in ("fence", "code_block") and tok.level == 0:
            parts.append(md.renderer.render(tokens[start:i], md.options, {}))
            parts.append(_code_block(tok.content, tok.info.split(" ")[0] if tok.info else "", len(blocks), theme))
            blocks.append(tok.content)
            start = i + 1
    parts.append(md.renderer.render(tokens[start:], md.options, {}))
    return "".join(parts), blocks


def _code_block(code: str, lang: str, index: int, theme: str) -> str:
    label = html.escape(lang) if lang else "code"
    body = _highlight(code.rstrip("\n"), lang, theme)
    return (f'<table width="100%" cellpadding="8" cellspacing="0" style="background:{CODE_BG[theme]};'
            f'margin-top:4px;margin-bottom:4px"><tr><td>'
            f'<span style="color:gray">{label}</span> &nbsp; <a href="copy-code:{index}">Copy</a>'
            f'<pre style="margin:0; white-space:pre-wrap">{body}</pre></td></tr></table>')  # long lines wrap


COMMON_LANGUAGES = ("python", "bash", "sh", "shell", "console", "json", "javascript", "js", "typescript", "ts",
                    "html", "css", "c", "cpp", "rust", "go", "java", "sql", "yaml", "toml", "diff", "text")


def warm_up() -> None:
    """Import the parser, the formatters and the common lexers once, on a pool thread at start: the first
    code block of a streamed reply would otherwise stall the window for ~70 ms while Pygments imports them."""
    for theme in CODE_BG:
        render_markdown("".join(f"```{lang}\nx = 1\n```\n" for lang in COMMON_LANGUAGES) + "*a* `b`\n\n1. c",
                        theme=theme)
