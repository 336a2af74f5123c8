"""A real UDP hole punch through two NATs, the pinned DTLS upgrade, and the relay fallback.

The peers (alice and bob) sit on private networks behind two masquerading NATs. A rendezvous
service on the public side tells each the other's public address; both punch at once; then
they upgrade the punched path to DTLS, each pinning the other's node ID. When the direct path
does not work (here: a firewall drops it), the handshake ends in ``HandshakeTimeout`` and the
peers meet through a small relay instead. The relay forwards ciphertext only: the session is
still end to end, pinned, between alice and bob.

Run the whole thing as root on Linux (it builds network namespaces, veth pairs and nftables
rules, and removes them afterwards)::

    sudo python examples/holepunch.py lab             # direct path, then blocked -> relay

The pieces also run on their own, e.g. across real machines::

    python examples/holepunch.py rendezvous --bind 0.0.0.0:3478
    python examples/holepunch.py relay --bind 0.0.0.0:3479
    python examples/holepunch.py peer --name alice --peer bob --cert alice.crt --key alice.key \\
        --peer-id <bob's node ID> --rendezvous HOST:3478 --relay HOST:3479

Each peer prints what happened, one ``key: value`` line per step, for people and for
tests/python/test_holepunch.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dtls_peer import DTLSPeerConnection, HandshakeError, Identity
from dtls_peer._plain_udp import recv_from, send_to

Address = tuple[str, int]

# How long each phase may take; the whole exchange stays well under a minute.
RENDEZVOUS_TIMEOUT = 10.0
PUNCH_TIMEOUT = 2.0
PUNCH_INTERVAL = 0.05
HANDSHAKE_TIMEOUT = 3.0
MESSAGE_TIMEOUT = 5.0


def say(key: str, value: object) -> None:
    print(f"{key}: {value}", flush=True)


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


# -- the public side ---------------------------------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.queue.put_nowait((data, addr))


async def _endpoint(bind: Address) -> tuple[asyncio.DatagramTransport, _Datagrams]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(_Datagrams, local_addr=bind)


async def rendezvous(bind: Address) -> None:
    """``REGISTER <me> <peer>`` from each side; once both are in, each gets ``PEER <ip> <port>``:
    the other's address as seen from here, i.e. its public (NAT) address."""
    transport, inbox = await _endpoint(bind)
    seen: dict[str, Address] = {}
    while True:
        data, addr = await inbox.queue.get()
        parts = data.decode(errors="replace").split()
        if len(parts) != 3 or parts[0] != "REGISTER":
            continue
        _, me, peer = parts
        seen[me] = addr
        if peer in seen:
            for name, other in ((me, peer), (peer, me)):
                host, port = seen[other]
                transport.sendto(f"PEER {host} {port}".encode(), seen[name])


async def relay(bind: Address) -> None:
    """``JOIN <session>`` from two addresses pairs them (each gets ``READY``); after that every
    datagram from one goes to the other, unread. It only ever sees ciphertext."""
    transport, inbox = await _endpoint(bind)
    members: dict[str, list[Address]] = {}
    partner: dict[Address, Address] = {}
    while True:
        data, addr = await inbox.queue.get()
        if data.startswith(b"JOIN "):
            session = members.setdefault(data[5:].decode(errors="replace"), [])
            if addr not in session:
                session[:] = [*session[-1:], addr]
            if len(session) == 2:
                partner[session[0]], partner[session[1]] = session[1], session[0]
                for member in session:
                    transport.sendto(b"READY", member)
        elif addr in partner:
            transport.sendto(data, partner[addr])


# -- a peer ------------------------------------------------------------------------------


async def _ask(sock: socket.socket, server: Address, request: bytes, answer: bytes, timeout: float) -> bytes:
    """Sends ``request`` every 0.2 s until a datagram from ``server`` starts with ``answer``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await send_to(sock, request, server)
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                data, addr = await asyncio.wait_for(recv_from(sock, 2048), 0.2)
                if addr[:2] == server and data.startswith(answer):
                    return data
    raise TimeoutError(f"no answer from {server[0]}:{server[1]} within {timeout} s")


async def punch(sock: socket.socket, peer: Address) -> bool:
    """Both sides send to each other's public address until each hears the other. The first
    packets die at the far NAT (it has no mapping yet); they open ours for the answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUNCH_TIMEOUT
    while loop.time() < deadline:
        await send_to(sock, b"punch", peer)
        with contextlib.suppress(asyncio.TimeoutError):
            _, addr = await asyncio.wait_for(recv_from(sock, 2048), PUNCH_INTERVAL)
            if addr[:2] == peer:
                # A few more so the other side hears us too; late ones are dropped by the
                # connection as non-DTLS datagrams.
                for _ in range(3):
                    await send_to(sock, b"punch", peer)
                return True
    return False


async def _session(
    sock: socket.socket, remote: Address, me: Identity, peer_id: str, name: str, path: str
) -> None:
    conn = DTLSPeerConnection(sock, remote, me, expected_node_id=peer_id, handshake_timeout=HANDSHAKE_TIMEOUT)
    try:
        await conn.handshake()
        say("path", path)
        say("peer", conn.peer_node_id)
        say("cipher", conn.cipher)
        await conn.send(f"hello from {name} over the {path} path".encode())
        say("received", (await asyncio.wait_for(conn.recv(), MESSAGE_TIMEOUT)).decode())
        # Leave the other side time to read ours before close_notify ends its session.
        await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def peer(
    name: str, other: str, me: Identity, peer_id: str, rendezvous_at: Address, relay_at: Address
) -> None:
    say("node", me.node_id)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        request = f"REGISTER {name} {other}".encode()
        answer = await _ask(sock, rendezvous_at, request, b"PEER ", RENDEZVOUS_TIMEOUT)
        _, host, port = answer.decode().split()
        public = (host, int(port))
        say("peer public address", f"{host}:{port}")
        say("hole punched", await punch(sock, public))
        try:
            return await _session(sock, public, me, peer_id, name, "direct")
        except HandshakeError as e:
            say("direct path failed", f"{type(e).__name__}: {e}")
    # The documented fallback: the same pinned DTLS session, through the relay.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.setblocking(False)
        session = "-".join(sorted((name, other)))
        await _ask(sock, relay_at, f"JOIN {session}".encode(), b"READY", RENDEZVOUS_TIMEOUT)
        await _session(sock, relay_at, me, peer_id, name, "relay")


# -- the lab: two NATs in network namespaces ---------------------------------------------------

PUBLIC_A, PUBLIC_B, SERVER = "198.51.100.1", "203.0.113.1", "198.51.100.254"
RENDEZVOUS_PORT, RELAY_PORT = 3478, 3479
NAT_RULES = """
table ip nat {
    chain postrouting { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
}
table ip filter {
    # Nothing unsolicited comes in from outside: that is what makes punching necessary. Dropping
    # it before conntrack confirms it also keeps the NAT's port mapping stable.
    chain input { type filter hook input priority filter; iifname "wan" ct state new drop; }
    chain forward { type filter hook forward priority filter; iifname "wan" ct state new drop; }
}
"""
BLOCK_DIRECT = f"""
table ip block {{
    chain forward {{
        type filter hook forward priority filter;
        ip saddr {PUBLIC_A} ip daddr {PUBLIC_B} drop
        ip saddr {PUBLIC_B} ip daddr {PUBLIC_A} drop
    }}
}}
"""


def _run(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


@dataclass
class Lab:
    """The networks: ``pub`` (rendezvous and relay at 198.51.100.254) joins ``nat-a`` (public
    198.51.100.1, LAN 10.0.1.0/24 with ``alice``) and ``nat-b`` (public 203.0.113.1, LAN
    10.0.2.0/24 with ``bob``). Use as a context manager: everything is removed on exit."""

    prefix: str = field(default_factory=lambda: f"dp{os.getpid()}")
    names: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add(self, role: str) -> str:
        name = self.ns(role)
        _run("ip", "netns", "add", name)
        self.names.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        _run("ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b)
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")

    def _build(self) -> None:
        pub = self._add("pub")
        for side, public, lan, host in (("a", PUBLIC_A, "10.0.1", "alice"), ("b", PUBLIC_B, "10.0.2", "bob")):
            nat, inside = self._add(f"nat-{side}"), self._add(host)
            net = public.rsplit(".", 1)[0]
            self._link(nat, "wan", f"{public}/24", pub, f"to-{side}", f"{net}.254/24")
            self._link(inside, "eth0", f"{lan}.2/24", nat, "lan", f"{lan}.1/24")
            _run("ip", "-n", nat, "route", "add", "default", "via", f"{net}.254")
            _run("ip", "-n", inside, "route", "add", "default", "via", f"{lan}.1")
            _run("ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            _run("ip", "netns", "exec", nat, "nft", "-f", "-", stdin=NAT_RULES)
        _run("ip", "netns", "exec", pub, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def block_direct(self) -> None:
        """A firewall on the public side drops everything between the two NATs; the
        rendezvous and the relay stay reachable."""
        _run("ip", "netns", "exec", self.ns("pub"), "nft", "-f", "-", stdin=BLOCK_DIRECT)

    def spawn(self, role: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def close(self) -> None:
        for name in reversed(self.names):
            # Whatever still runs in our namespaces was started by us.
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.names.clear()


@dataclass
class Outcome:
    """What each peer printed (``key: value`` lines) and how it exited."""

    lines: dict[str, list[tuple[str, str]]]
    status: dict[str, int]
    stderr: dict[str, str]

    def value(self, peer: str, key: str) -> list[str]:
        return [v for k, v in self.lines[peer] if k == key]


def run_peers(lab: Lab, workdir: Path, timeout: float = 45.0) -> Outcome:
    """Starts the rendezvous and the relay in ``pub`` and the two peers behind their NATs;
    returns once both peers exit (or after ``timeout``, when they are killed)."""
    script = str(Path(__file__).resolve())
    python = [sys.executable, script]
    identities = {}
    for name in ("alice", "bob"):
        identity = Identity.generate()
        identity.save(workdir / f"{name}.crt", workdir / f"{name}.key", overwrite=True)
        identities[name] = identity
    servers = [
        lab.spawn("pub", [*python, "rendezvous", "--bind", f"{SERVER}:{RENDEZVOUS_PORT}"]),
        lab.spawn("pub", [*python, "relay", "--bind", f"{SERVER}:{RELAY_PORT}"]),
    ]
    peers = {}
    try:
        time.sleep(0.5)  # let the servers bind; the peers retry anyway
        for name, other in (("alice", "bob"), ("bob", "alice")):
            peers[name] = lab.spawn(
                name,
                [
                    *python, "peer", "--name", name, "--peer", other,
                    "--cert", str(workdir / f"{name}.crt"), "--key", str(workdir / f"{name}.key"),
                    "--peer-id", identities[other].node_id,
                    "--rendezvous", f"{SERVER}:{RENDEZVOUS_PORT}", "--relay", f"{SERVER}:{RELAY_PORT}",
                ],
            )  # fmt: skip
        outputs = {}
        deadline = time.monotonic() + timeout
        for name, proc in peers.items():
            try:
                outputs[name] = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                outputs[name] = proc.communicate()
    finally:
        for proc in [*servers, *peers.values()]:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    return Outcome(
        lines={name: _pairs(out) for name, (out, _) in outputs.items()},
        status={name: proc.returncode for name, proc in peers.items()},
        stderr={name: err for name, (_, err) in outputs.items()},
    )


def _pairs(output: str) -> list[tuple[str, str]]:
    pairs = []
    for line in output.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            pairs.append((key, value))
    return pairs


def _lab() -> int:
    for blocked in (False, True):
        print(f"== {'direct path blocked: fallback to the relay' if blocked else 'direct path'}", flush=True)
        with Lab() as lab, tempfile.TemporaryDirectory() as workdir:
            if blocked:
                lab.block_direct()
            outcome = run_peers(lab, Path(workdir))
        for name in ("alice", "bob"):
            for key, value in outcome.lines[name]:
                print(f"  {name}: {key}: {value}")
            if outcome.status[name] != 0:
                print(f"  {name} failed:\n{outcome.stderr[name]}")
                return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("rendezvous", "relay"):
        commands.add_parser(command).add_argument("--bind", type=parse_address, required=True)
    p = commands.add_parser("peer")
    for option in ("--name", "--peer", "--cert", "--key", "--peer-id"):
        p.add_argument(option, required=True)
    p.add_argument("--rendezvous", type=parse_address, required=True)
    p.add_argument("--relay", type=parse_address, required=True)
    commands.add_parser("lab", help="build the two-NAT lab in network namespaces (root) and run both cases")
    args = parser.parse_args(argv)
    if args.command == "lab":
        return _lab()
    if args.command == "rendezvous":
        asyncio.run(rendezvous(args.bind))
    elif args.command == "relay":
        asyncio.run(relay(args.bind))
    else:
        identity = Identity.load(args.cert, args.key)
        asyncio.run(peer(args.name, args.peer, identity, args.peer_id.lower(), args.rendezvous, args.relay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
