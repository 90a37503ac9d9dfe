"""Replies as HTML for a QTextBrowser: Markdown (markdown-it-py) with code highlighted by Pygments, LaTeX math
drawn offline (ziamath, SVG, cached per formula), bordered tables, styled quotes and bare URLs as links.

Raw HTML in a reply is shown as text, never interpreted: a model's output cannot add links, images or
styles to the window. Each code block gets a "Copy" link (`copy-code:N`) that the view handles; each formula is an
image `math:KEY` that the view loads from `math_svg(KEY)`.
"""
from __future__ import annotations

import hashlib
import html
from collections import OrderedDict
from functools import lru_cache

from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

CODE_BG = {"light": "#f4f5f7", "dark": "#23252b"}
PYGMENTS_STYLE = {"light": "default", "dark": "monokai"}
INK = {"light": "#1f2328", "dark": "#e3e5e8"}  # the formulas' colour, the text's
RULE = {"light": "#a3a7ae", "dark": "#5f636c"}  # table borders and the quote bar
MATH_MAX_CHARS = 2000  # longer "formulas" are shown as their source
MATH_SIZE = 17  # px: about the body text's size
_formulas: OrderedDict[str, str] = OrderedDict()  # key -> SVG, the most recent few hundred
FORMULAS_KEPT = 512


@lru_cache(maxsize=2)
def _parser():
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.enable("table").enable("strikethrough").enable("linkify")
    dollarmath_plugin(md, allow_digits=False, double_inline=True)  # "$5 and $10" stays money
    texmath_plugin(md, delimiters="brackets")  # \(…\) and \[…\]
    return md


def math_svg(key: str) -> str | None:
    """The SVG of a formula that render_markdown drew (None once it has left the cache: drawn again on render)."""
    return _formulas.get(key)


@lru_cache(maxsize=1024)
def _draw(latex: str, display: bool, theme: str) -> str | None:
    """A formula as SVG, or None when it is not LaTeX ziamath can read (the source is shown instead)."""
    if len(latex) > MATH_MAX_CHARS or not latex.strip():
        return None
    try:
        import ziamath

        ziamath.config.svg2 = False  # SVG 1.1 paths: Qt's SVG renderer (SVG Tiny) draws no <symbol>/<use>
        return ziamath.Latex(latex, size=MATH_SIZE * (1.1 if display else 1.0), color=INK[theme],
                             inline=not display).svg()
    except (Exception, RecursionError):  # a model's half-written or made-up LaTeX: its text, never a crash
        return None


def _formula(latex: str, display: bool, theme: str) -> str:
    svg = _draw(latex, display, theme)
    if svg is None:
        source = html.escape(f"$${latex}$$" if display else f"${latex}$")
        return f"<p><code>{source}</code></p>" if display else f"<code>{source}</code>"
    key = hashlib.sha1(f"{theme}{display}{latex}".encode()).hexdigest()[:16]
    _formulas[key] = svg
    _formulas.move_to_end(key)
    while len(_formulas) > FORMULAS_KEPT:
        _formulas.popitem(last=False)
    image = f'<img src="math:{key}" alt="{html.escape(latex, quote=True)}" style="vertical-align: middle">'
    return f'<p align="center">{image}</p>' if display else image


def _highlight(code: str, lang: str, theme: str) -> str:
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
    env = {"theme": theme}
    start = 0
    for i, tok in enumerate(tokens):
        if tok.type in ("fence", "code_block") and tok.level == 0:
            parts.append(_render(md, tokens[start:i], env))
            parts.append(_code_block(tok.content, tok.info.split(" ")[0] if tok.info else "", len(blocks), theme))
            blocks.append(tok.content)
            start = i + 1
    parts.append(_render(md, tokens[start:], env))
    return "".join(parts), blocks


def _render(md, tokens, env: dict) -> str:
    """markdown-it's HTML, with what QTextBrowser cannot style told in attributes it knows."""
    theme = env["theme"]
    out = []
    for tok in tokens:
        if tok.type.startswith("math_") and tok.type not in ("math_block_label", "math_block_eqno"):
            display = "block" in tok.type or tok.type == "math_inline_double"
            out.append(_formula(tok.content.strip(), display, theme))
        elif tok.type in ("math_block_label", "math_block_eqno"):
            out.append(_formula(tok.content.strip(), True, theme))
        elif tok.type == "table_open":  # borders: QTextDocument draws these, not CSS ones
            out.append(f'<table border="1" cellspacing="0" cellpadding="6" bordercolor="{RULE[theme]}" '
                       f'style="border-collapse: collapse; border-style: solid; margin-top: 6px; margin-bottom: 6px">')
        elif tok.type == "blockquote_open":  # a bar on the left, the quote in muted ink
            out.append(f'<table cellspacing="0" cellpadding="0" style="margin-top: 4px; margin-bottom: 4px"><tr>'
                       f'<td width="3" bgcolor="{RULE[theme]}"></td><td style="padding-left: 12px; color: gray">')
        elif tok.type == "blockquote_close":
            out.append("</td></tr></table>")
        elif tok.type == "inline" and tok.children and any(c.type.startswith("math_") for c in tok.children):
            out.append(_render_inline(md, tok, env))
        else:
            out.append(md.renderer.render([tok], md.options, env))
    return "".join(out)


def _render_inline(md, tok, env: dict) -> str:
    out, run = [], []
    for child in tok.children:
        if child.type.startswith("math_"):
            out.append(md.renderer.renderInline(run, md.options, env))
            run = []
            out.append(_formula(child.content.strip(), child.type == "math_inline_double", env["theme"]))
        else:
            run.append(child)
    out.append(md.renderer.renderInline(run, md.options, env))
    return "".join(out)


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
        render_markdown("".join(f"```{lang}\nx = 1\n```\n" for lang in COMMON_LANGUAGES) + "*a* `b`\n\n1. c"
                        "\n\n$x^2$ https://example.com", theme=theme)
