"""A lean HTTP/1.1 streaming client whose timestamps come from the kernel, not from Python.

A load generator on a busy machine reads a chunk some milliseconds after it arrived; a tool that
stamps the chunk when Python gets to it reports its own lag as the model's latency. Here every
received segment carries the time the kernel queued it (SO_TIMESTAMPNS, CLOCK_REALTIME), and a
request is stamped just before its bytes are handed to the kernel, so what is measured is the
server and the network. The limit: segments waiting in a socket's queue are merged by the
kernel under the newest time, so a generator lagging by more than the gap between two tokens
dates the earlier one late (hence `workers`, which spreads heavy stages over the cores). TLS goes
through `ssl.MemoryBIO`, which keeps access to the raw socket (and so to its timestamps).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from harness.providers.base import ProviderError
from harness.providers.http_request import check_redirect, proxy_for

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; absent from some builds
_ANCILLARY = socket.CMSG_SPACE(16)
_READ_SIZE = 262144
MAX_HEAD_BYTES = 65536  # status line and headers of one response
MAX_BODY_BYTES = 64 * 1024 * 1024  # one response's body, decoded: far above any answer, far below the memory


def enable_rx_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp received data; False where unsupported (then user time is used)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return True
    except OSError:
        return False


def recv_stamped(sock: socket.socket, size: int = _READ_SIZE, flags: int = 0) -> tuple[bytes, float]:
    """Read what is there, with the kernel's receive time of the last segment read (epoch seconds)."""
    data, ancillary, _flags, _addr = sock.recvmsg(size, _ANCILLARY, flags)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanos = struct.unpack("qq", payload[:16])
            return data, seconds + nanos * 1e-9
    return data, time.time()


class WireError(Exception):
    """A request that did not complete; `kind` is `connection`, `timeout` or `incomplete`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Response:
    """What came back: status, headers, and the body as SSE events (each with its arrival time)
    or as plain bytes. `sent_at` is when the request left; `complete` means the body ended as
    HTTP says it should (a cut stream is not complete)."""

    sent_at: float = 0.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[tuple[float, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    first_byte_at: float | None = None
    last_at: float | None = None
    complete: bool = False
    keep_alive: bool = True


class _Parser:
    """Incremental HTTP/1.1 response parser: status line, headers, chunked or sized body, SSE.

    The kernel merges the segments that wait in a socket's queue and stamps a read with the
    arrival of its newest one, so each read has one time: an SSE event is dated by the read that
    brought its last byte.

    Every search resumes where the last one stopped (an event of 200 MB arriving in 256 KB reads is
    scanned once, not once per read), and what one response may hold is capped: a server cannot
    make the generator spin on an endless header or grow without bound. Informational answers
    (100 Continue) are skipped; a gzip or deflate body is decoded as it arrives; a stream labelled
    text/plain is still read as SSE when its body is events (as `harness run` reads it).
    """

    def __init__(self, response: Response, *, max_head: int | None = None, max_body: int | None = None):
        self.r = response
        self.buf = bytearray()
        self.at = 0.0  # arrival time of the read being parsed
        self.in_head = True
        self.head_scanned = 0  # bytes of buf already searched for the end of the head
        self.chunked = False
        self.remaining: int | None = None  # bytes left of a sized body or of the current chunk
        self.sse: bool | None = False  # None: decided by the body's first bytes
        self.sse_buf = bytearray()
        self.sse_scanned = 0  # bytes of sse_buf already searched for an event's end
        self.sse_crlf = False  # whether the stream has carried a CR (then events may end in CRLF CRLF)
        self.decoder: Any = None  # a zlib decompressor while the body is compressed
        self.body_bytes = 0
        self.max_head = MAX_HEAD_BYTES if max_head is None else max_head
        self.max_body = MAX_BODY_BYTES if max_body is None else max_body

    def feed(self, data: bytes, at: float) -> bool:
        """Take one read's bytes, which arrived at `at`; True once the response is complete."""
        self.at = at
        if self.r.first_byte_at is None:
            self.r.first_byte_at = at
        self.r.last_at = at
        self.buf += data
        while self.in_head:
            if not self._head():
                return False
        if self.chunked:
            return self._chunks()
        buf = self.buf
        n = len(buf) if self.remaining is None else min(self.remaining, len(buf))  # None: until the peer closes
        self._body(bytes(buf[:n]))
        del buf[:n]
        if self.remaining is not None:
            self.remaining -= n
            self.r.complete = self.remaining == 0
            if self.r.complete:
                self._end_body()
        return self.r.complete

    def closed(self) -> None:
        """The peer closed: a close-delimited body is then complete, anything else is cut."""
        if not self.in_head and not self.chunked and self.remaining is None:
            self._end_body()
            self.r.complete = True
        self.r.keep_alive = False

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n", max(0, self.head_scanned - 3))
        if end < 0:
            self.head_scanned = len(self.buf)
            if len(self.buf) > self.max_head:
                raise WireError("incomplete", f"response head over {self.max_head} bytes")
            return False
        if end > self.max_head:
            raise WireError("incomplete", f"response head over {self.max_head} bytes")
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        self.head_scanned = 0
        parts = lines[0].split(" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            raise WireError("incomplete", f"not an HTTP status line: {lines[0][:80]!r}") from None
        if 100 <= status < 200 and status != 101:
            return False if not self.buf else True  # 100 Continue and the like: the real answer follows
        self.r.status = status
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.r.headers[name.strip().lower()] = value.strip()
        h = self.r.headers
        self.chunked = "chunked" in h.get("transfer-encoding", "").lower()
        if not self.chunked and "content-length" in h:
            try:
                self.remaining = int(h["content-length"])
            except ValueError:
                raise WireError("incomplete", f"bad Content-Length: {h['content-length'][:40]!r}") from None
            if self.remaining > self.max_body:
                raise WireError("incomplete", f"response body of {self.remaining} bytes, over {self.max_body}")
        ctype = h.get("content-type", "").lower()
        self.sse = True if "text/event-stream" in ctype else (None if status == 200 and "json" not in ctype else False)
        encoding = h.get("content-encoding", "").lower().strip()
        if encoding in ("gzip", "x-gzip", "deflate"):
            # 32 + MAX_WBITS: a zlib or a gzip header, detected from the data
            self.decoder = zlib.decompressobj(47)
        elif encoding not in ("", "identity"):
            raise WireError("incomplete", f"unsupported Content-Encoding: {encoding[:40]}")
        self.r.keep_alive = h.get("connection", "").lower() != "close" and (self.chunked or self.remaining is not None)
        self.in_head = False
        return True

    def _chunks(self) -> bool:
        buf, pos, end = self.buf, 0, len(self.buf)
        try:
            while True:
                if self.remaining:  # inside a chunk's data
                    if pos >= end:
                        return False
                    take = min(self.remaining, end - pos)
                    self._body(bytes(buf[pos : pos + take]))
                    pos += take
                    self.remaining -= take
                    if self.remaining:
                        return False
                if self.remaining == 0:  # the CRLF after a chunk's data
                    if end - pos < 2:
                        return False
                    pos += 2
                    self.remaining = None
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    if end - pos > 1024:
                        raise WireError("incomplete", "a chunk-size line over 1024 bytes")
                    return False
                size = int(bytes(buf[pos:line_end]).split(b";", 1)[0].strip() or b"0", 16)
                pos = line_end + 2
                if size == 0:
                    self._end_body()
                    self.r.complete = True  # trailers, if any, are ignored
                    return True
                self.remaining = size
        finally:
            del buf[:pos]  # once per read, not once per chunk

    def _body(self, data: bytes) -> None:
        if self.decoder is not None and data:
            try:
                data = self.decoder.decompress(data, self.max_body + 1 - self.body_bytes)
            except zlib.error as exc:
                raise WireError("incomplete", f"undecodable compressed body: {exc}") from None
        if not data:
            return
        self.body_bytes += len(data)
        if self.body_bytes > self.max_body:
            raise WireError("incomplete", f"response body over {self.max_body} bytes")
        if self.sse is None:  # no event-stream label: events if the body starts like events
            self.sse = data.lstrip()[:5] in (b"data:", b"event", b"id:") or data.lstrip()[:1] == b":"
        if not self.sse:
            self.r.body += data
            return
        buf = self.sse_buf
        buf += data
        self.sse_crlf = self.sse_crlf or b"\r" in data  # the new bytes only: the buffer may be large
        crlf_possible = self.sse_crlf
        pos = 0
        start = max(0, self.sse_scanned - 3)
        while True:
            end, sep = buf.find(b"\n\n", max(pos, start)), 2
            if crlf_possible:
                crlf = buf.find(b"\r\n\r\n", max(pos, start))
                if crlf >= 0 and (end < 0 or crlf < end):
                    end, sep = crlf, 4
            if end < 0:
                break
            self.r.events.append((self.at, bytes(buf[pos:end])))
            pos = end + sep
            start = pos
        if pos:
            del buf[:pos]
        self.sse_scanned = len(buf)

    def _end_body(self) -> None:
        if self.decoder is not None:
            decoder, self.decoder = self.decoder, None
            try:
                rest = decoder.flush()
            except zlib.error as exc:
                raise WireError("incomplete", f"undecodable compressed body: {exc}") from None
            if rest:
                self._body(rest)
            if not decoder.eof:
                raise WireError("incomplete", "the compressed body was cut short")
        if self.sse and self.sse_buf.strip():
            self.r.events.append((self.at, bytes(self.sse_buf)))
            self.sse_buf.clear()


class Connection:
    """One keep-alive connection, plain or TLS (through memory BIOs, so timestamps survive)."""

    def __init__(
        self,
        sock: socket.socket,
        tls: ssl.SSLObject | None = None,
        incoming: ssl.MemoryBIO | None = None,
        outgoing: ssl.MemoryBIO | None = None,
    ):
        self.sock = sock
        self.tls, self.incoming, self.outgoing = tls, incoming, outgoing
        self.loop = asyncio.get_running_loop()
        self.closed = False

    async def _send(self, data: bytes) -> float:
        if self.tls is not None:
            self.tls.write(data)
            data = self.outgoing.read()
        sent_at = time.time()
        await self.loop.sock_sendall(self.sock, data)
        return sent_at

    def _plain(self, raw: bytes) -> bytes:
        if self.tls is None:
            return raw
        self.incoming.write(raw)
        out = bytearray()
        while True:
            try:
                piece = self.tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                break
            if not piece:
                break
            out += piece
        return bytes(out)

    async def exchange(self, request: bytes, timeout: float) -> Response:
        """Send one request and read its whole response within `timeout` seconds."""
        response = Response()
        parser = _Parser(response)
        done: asyncio.Future = self.loop.create_future()
        sock, fd = self.sock, self.sock.fileno()

        def readable() -> None:
            try:
                raw, at = recv_stamped(sock, _READ_SIZE)
                if raw:
                    plain = self._plain(raw)
                    complete = bool(plain) and parser.feed(plain, at)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                finish(WireError("connection" if parser.in_head else "incomplete", f"connection failed: {exc}"))
                return
            except (WireError, ValueError, ssl.SSLError) as exc:
                finish(exc if isinstance(exc, WireError) else WireError("incomplete", f"unreadable response: {exc}"))
                return
            if not raw:
                try:
                    parser.closed()
                except WireError as exc:
                    self.closed = True
                    finish(exc)
                    return
                self.closed = True
                finish(
                    None
                    if response.complete
                    else WireError(
                        "connection" if response.first_byte_at is None else "incomplete",
                        "connection closed before the response ended",
                    )
                )
            elif complete:
                finish(None)

        def finish(error: Exception | None) -> None:
            if not done.done():
                self.loop.remove_reader(fd)
                done.set_exception(error) if error else done.set_result(None)

        self.loop.add_reader(fd, readable)
        # a plain timer rather than asyncio.wait_for, which costs a task per request
        timer = self.loop.call_later(timeout, finish, WireError("timeout", f"timed out after {timeout:g} s"))
        try:
            response.sent_at = await self._send(request)
            await done
        except OSError as exc:
            self.close()
            raise WireError("connection", f"connection failed: {exc}") from None
        except WireError:
            self.close()
            raise
        finally:
            timer.cancel()
            if not done.done():
                self.loop.remove_reader(fd)
                done.cancel()
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.loop.remove_reader(self.sock.fileno())
            except (ValueError, OSError):
                pass
        self.sock.close()


_FROM_ENV = "from the environment"
MAX_REDIRECTS = 5


class Endpoint:
    """Where requests go (host, port, path, TLS, proxy) and a pool of idle keep-alive connections.

    The proxy and the redirect policy are the run's (providers/http_request.py): the environment's
    HTTP(S)_PROXY unless told otherwise (plain http through the proxy, https through a CONNECT
    tunnel), and 307/308 followed only within the endpoint's own origin, so the key and headers
    never reach another host.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10.0, proxy: str | None = _FROM_ENV):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.tls_context = ssl.create_default_context() if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.idle: list[Connection] = []
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.proxy = proxy_for(url) if proxy == _FROM_ENV else proxy
        self.proxy_auth = ""
        if self.proxy:
            pp = urlsplit(self.proxy)
            if pp.scheme != "http" or not pp.hostname:
                raise ValueError(f"only http:// proxies are supported, not {self.proxy!r}")
            self.proxy_host, self.proxy_port = pp.hostname, pp.port or 80
            if pp.username:
                user = f"{unquote(pp.username)}:{unquote(pp.password or '')}"
                self.proxy_auth = "Basic " + base64.b64encode(user.encode()).decode()
        self.redirected: dict[str, Endpoint] = {}

    def request_bytes(self, body: bytes, headers: dict[str, str]) -> bytes:
        # Through a proxy without a tunnel, the request line names the whole URL (absolute form).
        target = self.url.split("#", 1)[0] if self.proxy and self.tls_context is None else self.path
        head = [
            f"POST {target} HTTP/1.1",
            f"Host: {self.host_header}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            f"Content-Length: {len(body)}",
        ]
        if self.proxy_auth and self.tls_context is None:
            head.append(f"Proxy-Authorization: {self.proxy_auth}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    async def connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        host, port = (self.proxy_host, self.proxy_port) if self.proxy else (self.host, self.port)
        where = f"{host}:{port}" + (" (the proxy)" if self.proxy else "")
        sock = None
        handshaking = False  # a failure (or a timeout) once TCP is up is the TLS handshake's
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _name, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            enable_rx_timestamps(sock)
            await asyncio.wait_for(loop.sock_connect(sock, address), self.connect_timeout)
            if self.proxy and self.tls_context is not None:
                await self._tunnel(sock)
            if self.tls_context is None:
                return Connection(sock)
            handshaking = True
            return await self._handshake(sock)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            if sock is not None:
                sock.close()
            tls = " (TLS)" if handshaking or isinstance(exc, ssl.SSLError) else ""
            raise WireError("connection", f"cannot connect to {where}{tls}: {str(exc) or 'timed out'}") from None

    async def _tunnel(self, sock: socket.socket) -> None:
        """CONNECT through the proxy; the TLS handshake then runs inside the tunnel."""
        loop = asyncio.get_running_loop()
        head = f"CONNECT {self.host}:{self.port} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if self.proxy_auth:
            head += f"Proxy-Authorization: {self.proxy_auth}\r\n"
        await loop.sock_sendall(sock, (head + "\r\n").encode("latin-1"))
        reply = bytearray()
        while b"\r\n\r\n" not in reply:
            raw = await asyncio.wait_for(loop.sock_recv(sock, 4096), self.connect_timeout)
            if not raw or len(reply) > MAX_HEAD_BYTES:
                raise OSError("the proxy closed the tunnel request")
            reply += raw
        status = bytes(reply).split(b"\r\n", 1)[0].decode("latin-1")
        if status.split(" ")[1:2] != ["200"]:
            raise OSError(f"the proxy refused the tunnel: {status[:80]}")

    async def _handshake(self, sock: socket.socket) -> Connection:
        loop = asyncio.get_running_loop()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.tls_context.wrap_bio(incoming, outgoing, server_hostname=self.host)
        deadline = loop.time() + self.connect_timeout
        while True:
            try:
                tls.do_handshake()
                pending = outgoing.read()
                if pending:
                    await loop.sock_sendall(sock, pending)
                return Connection(sock, tls, incoming, outgoing)
            except ssl.SSLWantReadError:
                pending = outgoing.read()
                if pending:
                    await loop.sock_sendall(sock, pending)
                raw = await asyncio.wait_for(loop.sock_recv(sock, _READ_SIZE), max(0.01, deadline - loop.time()))
                if not raw:
                    raise ssl.SSLError("connection closed during the TLS handshake") from None
                incoming.write(raw)

    async def send(self, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        """POST `body`, following 307/308 within the origin (the body and headers sent again, as the
        run's client does); a redirect to another origin is refused before anything is sent there."""
        endpoint: Endpoint = self
        for _ in range(MAX_REDIRECTS + 1):
            response = await endpoint._send_once(body, headers, timeout)
            location = response.headers.get("location")
            if response.status not in (307, 308) or not location:
                return response
            target = urljoin(endpoint.url, location)
            try:
                check_redirect(self.url, target)
            except ProviderError as exc:
                raise WireError("4xx", str(exc)) from None
            if target not in self.redirected:
                self.redirected[target] = Endpoint(target, connect_timeout=self.connect_timeout, proxy=self.proxy)
            endpoint = self.redirected[target]
        raise WireError("4xx", f"more than {MAX_REDIRECTS} redirects from {self.url}")

    async def _send_once(self, body: bytes, headers: dict[str, str], timeout: float) -> Response:
        """POST `body`; a kept-alive connection the server has dropped meanwhile is replaced once."""
        data = self.request_bytes(body, headers)
        for attempt in (0, 1):
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else await self.connect()
            try:
                response = await conn.exchange(data, timeout)
            except WireError as exc:
                if reused and attempt == 0 and exc.kind == "connection":
                    continue
                raise
            if not conn.closed:
                self.idle.append(conn)
            return response
        raise WireError("connection", "connection failed")  # unreachable: the second attempt raises

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        for other in self.redirected.values():
            other.close()
