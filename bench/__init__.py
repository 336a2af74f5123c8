"""Side-by-side benchmark of dtls_peer against plain asyncio UDP and two pyOpenSSL DTLS patterns.

Run from the repository root: ``python -m bench`` (see docs/benchmarks.md)."""
