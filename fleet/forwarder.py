"""The public port of the embedded broker on a journal (fleet/broker.py): each connection relayed byte for byte to
the broker's private port, by `python -m fleet.forwarder HOST PORT TO_PORT TICKET`.

A process of its own, with a thread per direction of each connection moving bytes with splice(2) (no copy through
Python, the GIL released while it waits), so the fleet's every request pays one loopback hop and nothing of the
owner's own work. Until it reads `open` on its standard input it is a gate: it relays only connections whose first
request carries TICKET as client id (the fill-back's own clients) and holds any other, unanswered, until then (a
client that connected early gets its answer late, within its request timeout, rather than a refusal: aiokafka
gives up bootstrapping at the first). It exits when its standard input closes (its owner is gone) or on SIGTERM,
cutting every connection.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

# a request starts: int32 size, int16 api key, int16 api version, int32 correlation id, int16 client id length
_HEAD = 14
_CHUNK = 1 << 16


class Gate:
    def __init__(self, ticket: bytes) -> None:
        self.ticket = ticket
        self.open = threading.Event()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("closed")
        data += part
    return data


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes from src to dst until either side closes; then close both (the other pump ends with them)."""
    try:
        if hasattr(os, "splice"):
            r, w = os.pipe()
            try:
                while n := os.splice(src.fileno(), w, _CHUNK):
                    while n:
                        n -= os.splice(r, dst.fileno(), n)
            finally:
                os.close(r)
                os.close(w)
        else:  # not Linux
            while data := src.recv(_CHUNK):
                dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src, dst)


def _serve(client: socket.socket, to: tuple[str, int], gate: Gate) -> None:
    first = b""
    try:
        if not gate.open.is_set():
            client.settimeout(10)
            head = _recv_exactly(client, _HEAD)
            n = int.from_bytes(head[12:14], "big", signed=True)
            client_id = _recv_exactly(client, n) if 0 < n <= 256 else b""
            first = head + client_id
            client.settimeout(None)
            if client_id != gate.ticket:
                gate.open.wait()  # held, not refused: a client that connected early is answered once it opens
        upstream = socket.create_connection(to)
    except OSError:
        _close(client)
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if first:
        upstream.sendall(first)
    threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
    _pump(client, upstream)


def _watch_stdin(gate: Gate, server: socket.socket) -> None:
    for line in sys.stdin:
        if line.strip() == "open":
            gate.open.set()
    _close(server)  # the owner is gone: stop accepting (connections die with the process)
    os._exit(0)


def main(argv: list[str]) -> None:
    host, port, to_port, ticket = argv[0], int(argv[1]), int(argv[2]), argv[3].encode()
    gate = Gate(ticket)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(256)
    threading.Thread(target=_watch_stdin, args=(gate, server), daemon=True).start()
    print(f"listening {host}:{port}", flush=True)
    while True:
        try:
            client, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=_serve, args=(client, (host, to_port), gate), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
