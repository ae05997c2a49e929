"""Release notes are untrusted (SPEC §4.2): raw HTML stays text, and only `https:` links become links.

The renderer is markdown-it-py with raw HTML off, then nh3. A markdown link to anything but an
absolute `https:` URL loses its link and keeps its text: the admin still reads the sentence, and
nothing in the page points at the target. Every hostile target here is a well-formed markdown
link target, so it reaches the link rule rather than failing the markdown grammar.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.utils.html import escape

from updates.templatetags.update_notes import render_notes_html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def links(html: str) -> list[str | None]:
    return [attrs.get("href") for tag, attrs in tags(html) if tag == "a"]


def attributes(html: str) -> list[str]:
    """Every attribute a browser would see, as parsed, not as text that looks like one."""
    return [name for _, attrs in tags(html) for name in attrs]


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "javascript://%0aalert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox",
        "http://downgrade.example.com/1.2.0",
        "ftp://files.example.com/notes",
        "//evil.example.com/notes",
        "/admin/auth/user/",
    ],
)
def test_a_markdown_link_to_anything_but_https_keeps_its_text_and_loses_its_link(target):
    notes = f"Read [the notes]({target}) first."

    html = render_notes_html(notes)

    # markdown-it refuses script-like schemes itself (the markdown stays text); nh3 drops any
    # other non-https URL (the link's text stays). Either way: no link, no attribute, all text.
    assert html in ("<p>Read the notes first.</p>", f"<p>{escape(notes)}</p>")
    assert "<a" not in html
    assert attributes(html) == []


@pytest.mark.parametrize("url", ["http://plain.example/notes", "data:text/html,hi"])
def test_a_bare_url_that_is_not_https_stays_text(url):
    html = render_notes_html(f"see {url} now")

    assert html == f"<p>see {url} now</p>"


def test_a_bare_javascript_url_stays_text():
    html = render_notes_html("see javascript:alert(1) now")

    assert links(html) == []
    assert html == "<p>see javascript:alert(1) now</p>"


def test_an_https_markdown_link_becomes_a_link_that_opens_apart():
    html = render_notes_html("Read [the notes](https://opentrace.example.com/releases/1.2.0) first.")

    assert links(html) == ["https://opentrace.example.com/releases/1.2.0"]
    assert re.fullmatch(r'<p>Read <a href="[^"]+"( [a-z]+="[^"]*")*>the notes</a> first\.</p>', html)
    assert 'rel="noopener noreferrer nofollow"' in html
    assert 'target="_blank"' in html
    assert sorted(attributes(html)) == ["href", "rel", "target"]


def test_a_bare_https_url_becomes_a_link_without_its_trailing_punctuation():
    html = render_notes_html("See https://opentrace.example.com/releases/1.2.0.")

    assert links(html) == ["https://opentrace.example.com/releases/1.2.0"]
    assert html.endswith("</a>.</p>")


def test_a_links_text_is_escaped_too():
    html = render_notes_html('[<img src=x onerror="alert(1)">](https://ok.example/p)')

    assert links(html) == ["https://ok.example/p"]
    assert "<img" not in html
    assert "&lt;img src=x onerror=" in html
    assert "onerror" not in attributes(html)


def test_html_in_the_notes_is_shown_as_text():
    html = render_notes_html('<a href="javascript:alert(3)">click</a> <script>alert(1)</script>')

    assert links(html) == []
    assert "<script>" not in html
    assert (
        html
        == '<p>&lt;a href="javascript:alert(3)"&gt;click&lt;/a&gt; &lt;script&gt;alert(1)&lt;/script&gt;</p>'
    )
    assert attributes(html) == []


def test_an_image_is_never_loaded_only_linked_when_https():
    html = render_notes_html("![chart](https://img.example/a.png) ![x](javascript:alert(1))")

    assert "<img" not in html
    assert links(html) == ["https://img.example/a.png"]
    assert [tag for tag, _ in tags(html)] == ["p", "a"]
