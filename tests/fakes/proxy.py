"""A small forward proxy on loopback: CONNECT tunnels and absolute-form HTTP forwarding,
optional Basic authentication, and a record of what it was asked."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


class ForwardProxy:
    """CONNECT host:port → a tunnel; GET http://host:port/... → forwarded as is."""

    def __init__(self, authorization: str | None = None) -> None:
        # The exact Proxy-Authorization value required, e.g. "Basic dXNlcjpwYXNz".
        self.authorization = authorization
        self.request_lines: list[str] = []
        self.proxy_authorizations: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ForwardProxy:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """http://127.0.0.1:port."""
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stop listening and cut every tunnel."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in
                   (line.partition(":") for line in lines[1:] if line)}
        self.request_lines.append(lines[0])
        self.proxy_authorizations.append(headers.get("proxy-authorization", ""))
        if self.authorization and headers.get("proxy-authorization") != self.authorization:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                         b"Connection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        method, target, _ = lines[0].split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target)
            upstream = await asyncio.open_connection(url.hostname, url.port or 80)
            upstream[1].write(head)  # absolute form: HTTP/1.1 servers must accept it
        await writer.drain()
        for task in (asyncio.create_task(_pipe(reader, upstream[1])),
                     asyncio.create_task(_pipe(upstream[0], writer))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
