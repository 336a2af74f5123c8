"""How the command line reports errors: one line on stderr and an exit status."""

from __future__ import annotations

import sys

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error to report as one line, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str, status: int) -> int:
    print(f"dtls-peer: error: {message}", file=sys.stderr)
    return status
