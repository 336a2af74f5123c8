"""``keygen`` and ``id``: make an identity, and print a certificate's node ID."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._native import Identity, node_id_from_certificate
from .errors import CliError

KEY_TYPES = ("p256", "ed25519", "rsa", "secp256k1")
# The schemes a command line can name; a callable scheme is for applications (Python API).
SCHEMES = ("sha256", "libp2p")
SCHEME_HELP = (
    "sha256 (64 hex characters, SHA-256 of the node key; the default) or libp2p (a base58btc "
    "libp2p peer ID, 12D3KooW... for Ed25519)"
)


def add_scheme_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--scheme", choices=SCHEMES, default="sha256", help=f"{what}: {SCHEME_HELP}")


def add_commands(commands: Any) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="write a new identity (certificate and 0600 private key) and print its node ID",
        description="Write a new identity: a node key (PKCS#8 PEM, mode 0600) and a self-signed "
        "certificate of it. Prints the node ID under --scheme, which peers pin with --peer-id.",
    )
    keygen.add_argument("--cert", required=True, type=Path, help="certificate file to write (PEM)")
    keygen.add_argument("--key", required=True, type=Path, help="private key file to write (PEM, mode 0600)")
    keygen.add_argument(
        "--type",
        choices=KEY_TYPES,
        default="p256",
        help="node key type: p256 (ECDSA P-256, the default), ed25519, rsa (2048 bits) or secp256k1",
    )
    add_scheme_option(keygen, "how to write the node ID printed")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(run=_keygen)

    show = commands.add_parser(
        "id",
        help="print the node ID of a certificate (PEM or DER)",
        description="Print the node ID of a certificate file: the ID of the node key it carries "
        "(the key a libp2p extension endorses, if it has one, else its own key) under --scheme.",
    )
    show.add_argument("file", type=Path, help="certificate file, PEM or DER")
    add_scheme_option(show, "how to write the node ID")
    show.set_defaults(run=_show_id)


def _keygen(args: argparse.Namespace) -> int:
    if args.cert == args.key:
        raise CliError("--cert and --key must be different files")
    try:
        identity = Identity.generate(args.type, node_id_scheme=args.scheme)
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
        print(node_id_from_certificate(data, node_id_scheme=args.scheme))
    except ValueError as e:
        raise CliError(f"{args.file}: {e}") from None
    return 0
