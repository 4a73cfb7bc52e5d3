"""Renders report.md and report.html from templates/ (Jinja2) and the context of context.py.

The templates' filters are the only place where HTML is written in Python: escaping, with
`code` / **bold** / newline markup (`inline`), coloured signed numbers (`signed`), heading anchors
and the base64 of an embedded plot."""
from __future__ import annotations

import base64
import html
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_SIGNED = re.compile(r"(?<![\w.])([+-]\d+(?:\.\d+)?)")


def md_cell(text: str) -> str:
    """A Markdown table cell: | escaped, newlines as <br>."""
    return text.replace("|", "\\|").replace("\n", "<br>")


def inline(text: str) -> Markup:
    """Text as HTML: escaped, `code` and **bold** marked up, newlines as <br>."""
    out = html.escape(text, quote=False)
    out = _INLINE_CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return Markup(out.replace("\n", "<br>"))


def signed(text: str) -> Markup:
    """`inline`, with each +x / -x number in a pos / neg span (green / red)."""
    def repl(m: re.Match) -> str:
        cls = "neg" if m.group(1).startswith("-") else "pos"
        return f'<span class="{cls}">{m.group(1)}</span>'

    return Markup(_SIGNED.sub(repl, str(inline(text))))


def anchor(text: str) -> str:
    """Heading id: lower case, runs of anything but [a-z0-9] as one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def esc(text: str) -> Markup:
    """Escaped for HTML text and attribute values (quotes too)."""
    return Markup(html.escape(text))


def png_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("s3ft.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md_cell=md_cell, inline=inline, signed=signed, anchor=anchor, esc=esc, base64=png_base64)
    return env


def render(template: str, context: dict[str, Any]) -> str:
    """templates/`template` rendered with `context` (context.build's)."""
    return environment().get_template(template).render(context)
