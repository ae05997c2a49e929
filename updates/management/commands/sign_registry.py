from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from contract.registry import RegistryError, parse_signable
from updates import signing


class Command(BaseCommand):
    help = (
        "Wrap a schema-1 registry document in a signed envelope (written to stdout). "
        "The file's bytes are signed exactly as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("document", help="the schema-1 JSON document to sign")
        parser.add_argument(
            "--key", action="append", required=True, help="private key file (repeat for several signatures)"
        )
        parser.add_argument("--keyid", action="append", help="key id for each --key, in order")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["document"])
        try:
            document = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        try:
            # Refuse to sign what installs would refuse to read.
            warnings = parse_signable(document, now=timezone.now()).warnings
        except RegistryError as exc:
            raise CommandError(f"{path}: {exc}") from None
        for warning in warnings:
            self.stderr.write(f"warning: {warning}")
        keyids = options["keyid"] or []
        if keyids and len(keyids) != len(options["key"]):
            raise CommandError("give one --keyid per --key, or none")
        keys = []
        for position, key_path in enumerate(options["key"]):
            try:
                key = signing.load_private_key(Path(key_path))
            except signing.SigningError as exc:
                raise CommandError(str(exc)) from None
            keys.append((keyids[position] if keyids else None, key))
        sys.stdout.flush()
        self.stdout.write(signing.sign_envelope(document, keys).decode(), ending="")
