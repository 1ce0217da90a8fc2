"""A small HTTP proxy on loopback, in threads, for the console's transport tests.

It forwards every connection to the console, reading each request's head on the way
(so keep-alive connections are checked request by request). With
``refuse_websocket`` it answers ``403`` to any request carrying ``Upgrade: websocket``,
like a proxy that does not pass websockets. :meth:`cut` drops every open connection
and refuses new ones until :meth:`restore`: the network is gone for that while.
"""

from __future__ import annotations

import contextlib
import socket
import threading

REFUSAL = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n"
           b"Connection: close\r\n\r\nwebsockets are not allowed")
MAX_HEAD = 64 * 1024


class Proxy:
    def __init__(self, target_port: int, *, refuse_websocket: bool = False,
                 target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.refuse_websocket = refuse_websocket
        self.websocket_refusals = 0
        self.websocket_passed = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every connection and refuse new ones, until :meth:`restore`."""
        self._cut.set()
        with self._lock:
            doomed = list(self._open)
            self._open.clear()
        for sock in doomed:
            _close(sock)

    def restore(self) -> None:
        self._cut.clear()

    def stop(self) -> None:
        self._stopped.set()
        _close(self._listener)
        self.cut()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _close(client)
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._cut.is_set():
                return False
            self._open.update(socks)
            return True

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            _close(client)
            return
        if not self._track(client, upstream):
            _close(client)
            _close(upstream)
            return
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        try:
            self._forward_requests(client, upstream)
        except OSError:
            pass  # the other direction (or stop()) closed the connection meanwhile
        finally:
            _close(client)
            _close(upstream)

    def _forward_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to server, one request at a time: check its head, then pass its body."""
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = client.recv(65536)
                if not data or len(buffer) > MAX_HEAD:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip().lower()
            if headers.get(b"upgrade") == b"websocket":
                if self.refuse_websocket:
                    self.websocket_refusals += 1
                    client.sendall(REFUSAL)
                    return
                self.websocket_passed += 1
                upstream.sendall(head + b"\r\n\r\n" + buffer)
                _pipe(client, upstream)  # from here on it is a websocket: raw bytes
                return
            upstream.sendall(head + b"\r\n\r\n")
            if headers.get(b"transfer-encoding"):
                upstream.sendall(buffer)
                _pipe(client, upstream)  # chunked bodies are not parsed: pass the rest
                return
            remaining = int(headers.get(b"content-length", b"0") or 0)
            while remaining:
                if not buffer:
                    buffer = client.recv(min(65536, remaining))
                    if not buffer:
                        return
                part, buffer = buffer[:remaining], buffer[remaining:]
                upstream.sendall(part)
                remaining -= len(part)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(sink)
        _close(source)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
