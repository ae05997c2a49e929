from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from updates import signing


class Command(BaseCommand):
    help = (
        "Generate an Ed25519 key pair for signing registry documents. Writes the private key "
        "(PEM, mode 0600) and prints the OPENTRACE_REGISTRY_KEYS entry for installs to pin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="private key file to create (must not exist)")
        parser.add_argument("--keyid", help="key id (default: derived from the public key)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["out"])
        pair = signing.generate(options["keyid"])
        try:
            signing.write_private_key(path, pair.private_pem)
        except FileExistsError:
            raise CommandError(f"{path} already exists; refusing to overwrite a key") from None
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        self.stderr.write(f"private key written to {path} (keep it secret, keep it offline)")
        self.stdout.write(f"OPENTRACE_REGISTRY_KEYS={pair.pinned}")
