"""A raw-socket HTTP server that misbehaves on purpose, for `holdem.eval` tests: it answers
`GET /health` properly (so the start-up probe passes) and `POST /generate` with whatever bytes a
script returns for the n-th POST, or with nothing at all (a hang)."""
from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable

HANG = None  # a script returns this to accept the request and never answer it


def http(status: int, body: bytes | str = b"", reason: str = "X", headers: str = "") -> bytes:
    body = body.encode() if isinstance(body, str) else body
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
            .encode() + body)


def sglang(text: str, finish: str = "stop") -> bytes:
    """A well-formed /generate reply (no token ids: plain mode reads only the text)."""
    return http(200, json.dumps({"text": text, "meta_info": {"finish_reason": {"type": finish}}}))


Script = Callable[[int, bytes], "bytes | None"]  # (n-th POST from 0, request body) -> raw reply or HANG


class HostileServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.posts = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.post_seen = threading.Condition(self.lock)
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._handle(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for_posts(self, n: int, deadline_s: float = 60.0) -> None:
        with self.post_seen:
            if not self.post_seen.wait_for(lambda: self.posts >= n, timeout=deadline_s):
                raise AssertionError(f"the server saw {self.posts} POSTs, not {n}, within {deadline_s} s")

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        while not self.stop.is_set():
            request = _read_request(conn)
            if request is None:
                return
            line, body = request
            if line.startswith(b"GET"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive
                continue
            with self.post_seen:
                n = self.posts
                self.posts += 1
                self.post_seen.notify_all()
            reply = self.script(n, body)
            if reply is HANG:
                self.stop.wait()
                return
            conn.sendall(reply)
            return  # every scripted reply closes the connection


def _read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
    except (OSError, ValueError):
        return None
    return head.split(b"\r\n")[0], body
