"""Running the ``dtls-peer`` command line in tests the way a user does (``python -m dtls_peer``
in a subprocess): one-shot commands, and long-running peers whose stderr status lines are read
as they come. The ``spawn`` fixture (conftest.py) starts the latter."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

# Generous bound on any one step (process start-up included) on a loaded machine.
STEP = 20.0


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dtls_peer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=STEP,
        check=False,
        cwd=cwd,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    transcript = f"exit {done.returncode}\nstdout: {done.stdout!r}\nstderr: {done.stderr!r}"
    assert done.returncode == status, transcript
    lines = done.stderr.splitlines()
    assert len(lines) == 1, transcript
    assert "Traceback" not in done.stderr, transcript
    for word in words:
        assert word in lines[0], transcript


class Peer:
    """A running ``dtls-peer`` command (listen, connect, send, receive) whose stderr is read
    line by line."""

    def __init__(self, argv: Sequence[str], proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.argv = argv
        self.proc = proc
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.status_lines: list[str] = []

    def transcript(self) -> str:
        return " ".join(self.argv[3:]) + "\n" + "\n".join(self.status_lines)

    async def status(self, pattern: str) -> re.Match[str]:
        """Reads stderr until a line matches ``pattern``."""
        regex = re.compile(pattern)
        while True:
            try:
                raw = await asyncio.wait_for(self.stderr.readline(), STEP)
            except asyncio.TimeoutError:
                raise AssertionError(f"no status line matching {pattern!r}:\n{self.transcript()}") from None
            if not raw:
                raise AssertionError(f"exited before {pattern!r}:\n{self.transcript()}")
            line = raw.decode().rstrip("\n")
            self.status_lines.append(line)
            assert "Traceback" not in line, self.transcript()
            found = regex.search(line)
            if found:
                return found

    async def say(self, line: bytes) -> None:
        self.stdin.write(line + b"\n")
        await self.stdin.drain()

    async def hear(self) -> bytes:
        return await asyncio.wait_for(self.stdout.readline(), STEP)

    async def exit_status(self) -> int:
        rest = await asyncio.wait_for(self.stderr.read(), STEP)
        self.status_lines.extend(rest.decode().splitlines())
        assert "Traceback" not in rest.decode(), self.transcript()
        return await asyncio.wait_for(self.proc.wait(), STEP)


class Spawn(Protocol):
    async def __call__(self, *args: str | Path) -> Peer: ...


def keygen(tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    done = run_cli("keygen", "--cert", cert, "--key", key, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return cert, key, done.stdout.strip()
