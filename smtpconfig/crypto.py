"""Secrets at rest: Fernet tokens keyed by `settings.OPENTRACE_SECRETS_KEY`.

The setting is a list of Fernet keys, newest first. Encryption always uses the newest key;
decryption tries every key (MultiFernet), so an operator rotates by prepending a new key,
running `manage.py rotate_secrets`, and only then removing the old key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretKeyError(Exception):
    """A stored secret cannot be decrypted (its key was removed or replaced) or no key is set.

    Retrying does not bring a key back (the mailer makes it a permanent `MailError`). The
    message tells the operator what to do and never contains the secret or the keys.
    """


def _fernet(keys: list[str] | None = None) -> MultiFernet:
    keys = list(settings.OPENTRACE_SECRETS_KEY if keys is None else keys)
    if not keys:
        raise SecretKeyError("OPENTRACE_SECRETS_KEY is empty: no key to encrypt or decrypt secrets with")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise SecretKeyError("OPENTRACE_SECRETS_KEY holds a value that is not a Fernet key") from None


def encrypt(plaintext: str, keys: list[str] | None = None) -> str:
    return _fernet(keys).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str, keys: list[str] | None = None) -> str:
    try:
        return _fernet(keys).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretKeyError(
            "The stored secret cannot be decrypted with any key in OPENTRACE_SECRETS_KEY "
            "(was its key removed or replaced?). Restore the old key as a second key, "
            "or enter the secret again."
        ) from None


def rotate(token: str, keys: list[str] | None = None) -> str:
    """Re-encrypt `token` under the newest key; raises SecretKeyError when no key opens it."""
    try:
        return _fernet(keys).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretKeyError(
            "A stored secret cannot be decrypted with any key in OPENTRACE_SECRETS_KEY; it was left as it is"
        ) from None
