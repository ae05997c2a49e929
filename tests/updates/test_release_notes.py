"""Release notes are untrusted (SPEC §4.2): escaped, and only `https:` links become links.

Every hostile payload here has the markdown link's shape, `[text](target)` with a target
free of spaces and parentheses, so it reaches the link rule: a rule that let any scheme
through would turn each of them into a link.
"""

from __future__ import annotations

import re

import pytest
from django.utils.html import escape

from updates.templatetags.update_notes import render_notes_html


def links(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]*)"', html)


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert`1`",
        "JavaScript:alert`1`",
        "javascript://%0aalert`1`",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox",
        "http://downgrade.example.com/1.2.0",
        "ftp://files.example.com/notes",
        "//evil.example.com/notes",
        "/admin/auth/user/",
    ],
)
def test_a_markdown_link_to_anything_but_https_stays_escaped_text(target):
    notes = f"Read [the notes]({target}) first."

    html = render_notes_html(notes)

    assert links(html) == []
    assert "<a " not in html
    assert f"<p>{escape(notes)}</p>" == html


@pytest.mark.parametrize("url", ["http://plain.example/notes", "javascript:alert`1`", "data:text/html,hi"])
def test_a_bare_url_that_is_not_https_stays_text(url):
    html = render_notes_html(f"see {url} now")

    assert links(html) == []
    assert escape(url) in html


def test_an_https_markdown_link_becomes_a_link_that_opens_apart():
    html = render_notes_html("Read [the notes](https://opentrace.example.com/releases/1.2.0) first.")

    assert links(html) == ["https://opentrace.example.com/releases/1.2.0"]
    assert (
        '<a href="https://opentrace.example.com/releases/1.2.0" rel="noopener noreferrer nofollow" '
        'target="_blank">the notes</a>'
    ) in html


def test_a_bare_https_url_becomes_a_link_without_its_trailing_punctuation():
    html = render_notes_html("See https://opentrace.example.com/releases/1.2.0.")

    assert links(html) == ["https://opentrace.example.com/releases/1.2.0"]
    assert html.endswith("</a>.</p>")


def test_a_links_text_is_escaped_too():
    html = render_notes_html('[<img src=x onerror="alert(1)">](https://ok.example/p)')

    assert links(html) == ["https://ok.example/p"]
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_html_in_the_notes_is_shown_as_text():
    html = render_notes_html('<a href="javascript:alert(3)">click</a> <script>alert(1)</script>')

    assert links(html) == []
    assert "<script>" not in html
    assert "&lt;a href=&quot;javascript:alert(3)&quot;&gt;click&lt;/a&gt;" in html
