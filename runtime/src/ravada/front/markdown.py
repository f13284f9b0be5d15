"""Machine descriptions: Markdown rendered to HTML that cannot carry script.

markdown-it-py in CommonMark mode with raw HTML off: ``<script>``, ``<img onerror>`` and
any other tag typed in a description come out as text; links and images only keep URLs
markdown-it's ``validateLink`` allows (no ``javascript:``, ``vbscript:``, ``file:``, nor
``data:`` except images), and links get ``rel="nofollow noopener"``. Images are dropped to
their text (a description must not make the user's browser fetch anything).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

MAX_CHARS = 10_000


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable(["image"])

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "nofollow noopener")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


def render(text: str | None) -> Markup:
    """Safe HTML of a Markdown description (empty for none)."""
    if not text:
        return Markup("")
    return Markup(_md().render(text[:MAX_CHARS]))  # noqa: S704 (raw HTML is off: see above)
