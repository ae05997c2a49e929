"""Release notes: markdown from the registry, rendered for the admin and sanitised (SPEC §4.2).

The notes are untrusted text. markdown-it-py renders them with raw HTML disabled (a `<script>`
in the notes stays visible text), then nh3 (the Ammonia sanitiser) keeps only formatting
tags, drops every attribute but a link's `href`, and every URL scheme but `https:`. A link
gets `rel="noopener noreferrer nofollow"` and opens in a new tab. Images are never loaded
from elsewhere: an image becomes a link to it (when https) labelled with its alt text.
"""

from __future__ import annotations

import re
from typing import Any

import nh3
from django import template
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

register = template.Library()

ALLOWED_TAGS = {
    "a", "p", "br", "hr", "strong", "em", "b", "i", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
LINK_REL = "noopener noreferrer nofollow"
_HREFLESS_LINK = re.compile(r"<a(?: target=\"_blank\"| rel=\"[a-z ]*\")*>(.*?)</a>", re.S)


def _image_as_link(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    escape = self.escapeHtml if hasattr(self, "escapeHtml") else _escape
    if src.lower().startswith("https://"):
        return f'<a href="{escape(src)}">{escape(alt)}</a>'
    return escape(alt)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.enable(["table", "strikethrough", "linkify"])
    md.add_render_rule("image", _image_as_link)
    return md


_MARKDOWN = _parser()
_CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes={"a": {"href"}},
    url_schemes={"https"},
    url_relative="deny",  # a relative link would point into the admin itself
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)


def render_notes_html(notes: str) -> SafeString:
    html = _MARKDOWN.render(notes or "")
    clean = _CLEANER.clean(html)
    # A link whose URL nh3 removed (http:, javascript:, relative) is left as its text.
    clean = _HREFLESS_LINK.sub(r"\1", clean)
    # Safe: nh3 removed every tag, attribute and URL scheme not listed above.
    return mark_safe(clean.strip())  # noqa: S308


@register.filter(name="release_notes")
def release_notes(notes: str | None) -> SafeString:
    return render_notes_html(notes or "")
