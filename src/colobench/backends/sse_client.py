"""A minimal streaming HTTP/1.1 client for Server-Sent Events, on asyncio protocols + httptools.

Why not aiohttp here (it serves everything else, and the fake server): aiohttp's response
StreamReader feeds every HTTP chunk through several Python layers and wakes the reading task
once per chunk. At the load a benchmark client must sustain (100k streamed tokens/s from one
process) that machinery alone costs more than the whole per-token budget (measured: 12 us per
token with aiohttp against a 6 us target). Here httptools (the C HTTP parser uvicorn uses)
decodes the response, SSE events are split and timestamped inside the protocol's
`data_received` callback, and the request's task wakes once, when the stream ends. The
timestamp is also taken earlier: when the bytes reach the process, not when a task resumes.

What it does: keep-alive connections with no pool cap (the configured concurrency is the real
one), chunked, content-length and close-delimited bodies, TLS for https, a retry of a request
whose reused connection was closed by the server before answering, and a watchdog that fails
streams silent for longer than the stall timeout. What it does not: redirects, proxies,
compression, HTTP/2 (inference servers stream SSE over plain HTTP/1.1).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import httptools

from colobench.clock import now_ns

WATCHDOG_INTERVAL_S = 0.5


class StreamFailed(Exception):
    """The connection or the HTTP exchange failed; the message says how."""


@dataclass
class Response:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)  # non-200 bodies only


class _Exchange:
    """One request/response on a connection: collects the status, feeds a 200 body to `on_data`."""

    def __init__(self, on_data: Callable[[bytes, int], None]):
        self.on_data = on_data
        self.response = Response()
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.got_bytes = False
        self.headers_complete = False
        self.framed = False  # chunked or content-length: the end is known without closing
        self.last_data_ns = now_ns()


class _Protocol(asyncio.Protocol):
    """An HTTP/1.1 client connection; httptools calls the on_* methods while parsing."""

    def __init__(self, pool: "ConnectionPool"):
        self.pool = pool
        self.transport: Any = None
        self.exchange: _Exchange | None = None
        self.parser: Any = None
        self.keep_alive = True
        self.closed = False
        self._now = 0
        self.reused = False
        self.callback_error: Exception | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            return
        self._now = ex.last_data_ns = now_ns()
        ex.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(StreamFailed("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised (a malformed event, an error in the stream)
            self._fail(self.callback_error or StreamFailed(f"malformed HTTP response ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        if ex is None or ex.done.done():
            return
        if ex.headers_complete and not ex.framed and ex.response.status:
            self._finish()  # a close-delimited body ends with the connection
            return
        how = "before any response" if not ex.got_bytes else "mid-stream"
        self._fail(StreamFailed(f"connection closed {how}" + (f" ({exc})" if exc else "")))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"transfer-encoding", b"content-length"):
            self.exchange.framed = True

    def on_headers_complete(self) -> None:
        ex = self.exchange
        ex.headers_complete = True
        ex.response.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex.response.status == 200:
            try:
                ex.on_data(body, self._now)
            except Exception as exc:
                self.callback_error = exc
                raise
        elif len(ex.response.body) < 4096:
            ex.response.body += body

    def on_message_complete(self) -> None:
        self._finish()

    # -- helpers
    def start(self, request: bytes, exchange: _Exchange) -> None:
        self.exchange = exchange
        self.callback_error = None
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(request)

    def _finish(self) -> None:
        ex, self.exchange = self.exchange, None
        if ex is not None and not ex.done.done():
            ex.done.set_result(ex.response)
        if self.keep_alive and not self.closed:
            self.pool.release(self)
        elif self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        ex, self.exchange = self.exchange, None
        if ex is not None and not ex.done.done():
            ex.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one origin; as many as there are requests in flight."""

    def __init__(self, url: str, connect_timeout_s: float = 10.0, stall_timeout_s: float = 60.0):
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        # never the user:password of the URL (that goes in an Authorization header)
        self.host_header = (parts.hostname or "").encode() + (f":{parts.port}".encode() if parts.port else b"")
        self.connect_timeout_s, self.stall_timeout_s = connect_timeout_s, stall_timeout_s
        self.idle: list[_Protocol] = []
        self.active: set[_Protocol] = set()
        self._watchdog: asyncio.Task | None = None

    def release(self, proto: _Protocol) -> None:
        self.active.discard(proto)
        proto.reused = True
        self.idle.append(proto)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port, ssl=self.ssl),
            self.connect_timeout_s)
        return proto

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """Fail streams that have been silent longer than the stall timeout (one timer for all)."""
        limit = int(self.stall_timeout_s * 1e9)
        while self.active:
            await asyncio.sleep(min(WATCHDOG_INTERVAL_S, self.stall_timeout_s / 2))
            now = now_ns()
            for proto in list(self.active):
                ex = proto.exchange
                if ex is not None and now - ex.last_data_ns > limit:
                    proto._fail(asyncio.TimeoutError(f"no data for {self.stall_timeout_s:g} s (stalled stream)"))
                    self.active.discard(proto)

    async def post(self, path: str, body: bytes, headers: bytes, on_data: Callable[[bytes, int], None]) -> Response:
        """POST `body`; a 200 body is passed to `on_data(bytes, receive_ns)` as it arrives."""
        request = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + self.host_header + b"\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n" + headers + b"\r\n" + body)
        for attempt in (0, 1):
            proto = None
            while self.idle:
                candidate = self.idle.pop()
                if not candidate.closed:
                    proto = candidate
                    break
            if proto is None:
                proto = await self._connect()
            self.active.add(proto)
            self._ensure_watchdog()
            exchange = _Exchange(on_data)
            proto.start(request, exchange)
            try:
                return await exchange.done
            except StreamFailed as exc:
                # a kept-alive connection the server had closed: retry once on a fresh one
                if attempt == 0 and proto.reused and not exchange.got_bytes and "before any" in str(exc):
                    continue
                raise
            finally:
                self.active.discard(proto)
        raise StreamFailed("unreachable")

    async def aclose(self) -> None:
        for proto in self.idle + list(self.active):
            if proto.transport is not None:
                proto.transport.close()
        self.idle.clear()
        self.active.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except asyncio.CancelledError:
                pass
            self._watchdog = None
