"""`opentrace.redact`: credentials in URLs never reach a page, a mail or a log."""

from __future__ import annotations

import pytest

from opentrace.redact import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:hunter2@git.example.com/r.git", "https://user:***@git.example.com/r.git"),
        ("https://ghp_abc123@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("https://h/x?access_token=abc&page=2", "https://h/x?access_token=***&page=2"),
        ("https://h/x?page=2&TOKEN=abc", "https://h/x?page=2&TOKEN=***"),
        (
            "https://s3/o?X-Amz-Credential=AK%2Fx&X-Amz-Signature=dead",
            "https://s3/o?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("https://h/?key=abc#part", "https://h/?key=***#part"),
        ("https://h/?client_secret=abc", "https://h/?client_secret=***"),
    ],
)
def test_credentials_in_urls_are_replaced(text, shown):
    assert redact(text) == shown
    assert redact(shown) == shown  # redacting twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "see https://example.com/docs?page=1&lang=en",
        "git@github.com:acme/opentrace.git",  # scp-like: no credential in it
        "mail ops@example.com",
        "migrate: applied 0004_update_policy",
    ],
)
def test_text_without_credentials_is_unchanged(text):
    assert redact(text) == text
