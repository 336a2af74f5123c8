"""``python -m dtls_peer``: the command line (see ``dtls_peer.cli``)."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
