"""``keygen`` and ``id``: make an identity, and print a certificate's node ID."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._native import Identity, node_id_from_certificate
from .errors import CliError


def add_commands(commands: Any) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="write a new identity (certificate and 0600 private key) and print its node ID",
        description="Write a new identity: an ECDSA P-256 key (mode 0600) and a self-signed "
        "certificate. Prints the node ID, which peers pin with --peer-id.",
    )
    keygen.add_argument("--cert", required=True, type=Path, help="certificate file to write (PEM)")
    keygen.add_argument("--key", required=True, type=Path, help="private key file to write (PEM, mode 0600)")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(run=_keygen)

    show = commands.add_parser(
        "id",
        help="print the node ID of a certificate (PEM or DER)",
        description="Print the node ID (SHA-256 of the public key) of a certificate file.",
    )
    show.add_argument("file", type=Path, help="certificate file, PEM or DER")
    show.set_defaults(run=_show_id)


def _keygen(args: argparse.Namespace) -> int:
    if args.cert == args.key:
        raise CliError("--cert and --key must be different files")
    try:
        identity = Identity.generate()
        identity.save(args.cert, args.key, overwrite=args.force)
    except FileExistsError as e:
        raise CliError(f"{e} (use --force to replace it)") from None
    print(identity.node_id)
    return 0


def _show_id(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror or e}") from None
    try:
        print(node_id_from_certificate(data))
    except ValueError as e:
        raise CliError(f"{args.file}: {e}") from None
    return 0
