"""Tiny loopback servers for tests of hostile or stuck servers: raw sockets, one thread per connection,
replies generated lazily; an HTTP request reader and a bare WebSocket handshake and frame writer."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from collections.abc import Callable

import pytest

GIB = 1 << 30
MIB = 1 << 20


class Server:
    """A loopback TCP server; `handle(conn)` runs in a thread per connection. Sending stops as soon as
    the client goes away (a broken pipe), so a '3 GiB' reply costs only what the client reads."""

    def __init__(self, handle: Callable[[socket.socket], None]):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.handle = handle
        self.sent = 0
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass  # the client dropped the connection: what these tests expect
        finally:
            conn.close()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    made: list[Server] = []

    def make(handle) -> Server:
        made.append(Server(handle))
        return made[-1]

    yield make
    for s in made:
        s.close()


def read_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """The request line and headers, and the body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            raise OSError("closed")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            raise OSError("closed")
        body += piece
    return head, body


def read_head(conn: socket.socket) -> bytes:
    """The request line and headers (the body is read and ignored)."""
    return read_request(conn)[0]


SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: close\r\n\r\n")


def lazily(total: int, piece: bytes):
    """`total` bytes as repeats of `piece`, generated as they are sent."""
    for _ in range(total // len(piece)):
        yield piece


def ws_handshake(conn: socket.socket) -> None:
    head = read_head(conn)
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def ws_frame_head(opcode: int, length: int, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def drain(conn: socket.socket, stop: threading.Event) -> None:
    """Read and ignore what the client sends (its request, pongs, the close frame)."""
    conn.settimeout(0.2)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def ws_server(server, send_after_handshake) -> Server:
    def handle(conn):
        ws_handshake(conn)
        stop = threading.Event()
        reader = threading.Thread(target=drain, args=(conn, stop), daemon=True)
        reader.start()
        try:
            send_after_handshake(srv, conn)
        finally:
            stop.set()

    srv = server(handle)
    return srv
