"""The ``dtls-peer`` command line (also ``python -m dtls_peer``).

Subcommands: ``keygen`` and ``id`` (identities), ``listen`` and ``connect`` (a pinned session
that chats over stdin/stdout or echoes), ``send`` and ``receive`` (one file over a session with
data channels, SHA-256 checked), ``demo`` (the whole job on loopback). Every error is
one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..exceptions import DTLSError, HandshakeTimeout, PeerVerificationError
from . import demo, keys, session, transfer
from .errors import EXIT_USAGE, CliError, fail

# Exit statuses a script can branch on (also listed in ``dtls-peer --help``).
EXIT_STATUSES = """exit status:
  0  success (a session ends normally when either side closes it)
  1  error (bad file, refused handshake, session failure, ...)
  2  bad command-line arguments
  3  handshake timed out: the peer is unreachable or not answering
  4  the peer's identity did not match --peer-id
  130 interrupted (Ctrl-C)"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line instead of the usage block plus a line."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dtls-peer",
        description="Pinned DTLS 1.2 sessions between peers identified by node IDs.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    keys.add_commands(commands)
    session.add_commands(commands)
    transfer.add_commands(commands)
    demo.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        result = args.run(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except KeyboardInterrupt:
        return 130
    except CliError as e:
        return fail(str(e), e.status)
    except HandshakeTimeout as e:
        return fail(f"{e} (is the peer running and reachable?)", 3)
    except PeerVerificationError as e:
        return fail(str(e), 4)
    except (OSError, ValueError, DTLSError) as e:
        return fail(str(e) or type(e).__name__, 1)
    except Exception as e:
        # The CLI promises no tracebacks; still name what went wrong so it can be reported.
        return fail(f"internal error ({type(e).__name__}: {e}); please report it", 1)


__all__ = ["main"]
