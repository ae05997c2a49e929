"""Release notes are untrusted text: everything is escaped and only https: links become links."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# [text](https://...) or a bare https://... URL. Anything else (javascript:, data:, http:) stays text.
_LINK = re.compile(
    r"\[(?P<text>[^\[\]\n]{1,200})\]\((?P<target>https://[^\s()<>\"']{1,2000})\)"
    r"|(?P<bare>https://[^\s()<>\"'\[\]]{1,2000})"
)


def _link(url: str, text: str) -> str:
    return format_html('<a href="{}" rel="noopener noreferrer nofollow" target="_blank">{}</a>', url, text)


def render_notes_html(notes: str) -> SafeString:
    parts: list[str] = []
    position = 0
    for match in _LINK.finditer(notes):
        parts.append(escape(notes[position : match.start()]))
        if match.group("bare"):
            url = match.group("bare").rstrip(".,;:!?")
            parts.append(_link(url, url))
            parts.append(escape(match.group("bare")[len(url) :]))
        else:
            parts.append(_link(match.group("target"), match.group("text")))
        position = match.end()
    parts.append(escape(notes[position:]))
    html = "".join(parts)
    paragraphs = [
        p.replace("\n", "<br>") for p in re.split(r"\n\s*\n", html.replace("\r\n", "\n")) if p.strip()
    ]
    # Safe: every piece above was escaped or built with format_html.
    return mark_safe("".join(f"<p>{p}</p>" for p in paragraphs))  # noqa: S308


@register.filter(name="release_notes")
def release_notes(notes: str | None) -> SafeString:
    return render_notes_html(notes or "")
