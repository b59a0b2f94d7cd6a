"""The router's end of the Unix-socket links to the workers.

One :class:`WorkerLink` per connected worker. Outgoing messages are appended
to a buffer and written once per event-loop turn, so a burst of events costs
one ``write`` per worker, not one per message. A worker that stops reading is
cut off when its buffer passes a bound (it reconnects and re-registers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

from shared.errors import FrameError
from shared.ipc import FrameDecoder, Hello, Message, encode

log = logging.getLogger("router.links")

# Router -> worker bytes waiting in user space plus the transport's buffer.
MAX_PENDING_BYTES = 64 * 1024 * 1024


class LinkHandler(Protocol):
    def link_ready(self, link: WorkerLink, hello: Hello) -> None: ...
    def link_message(self, link: WorkerLink, message: Message) -> None: ...
    def link_lost(self, link: WorkerLink) -> None: ...


class WorkerLink(asyncio.Protocol):
    """One worker's link. ``worker_id`` is known once its Hello arrived."""

    def __init__(self, handler: LinkHandler, loop: asyncio.AbstractEventLoop) -> None:
        self._handler = handler
        self._loop = loop
        self._decoder = FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self._outgoing = bytearray()
        self._flush_scheduled = False
        self.worker_id: int | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except FrameError as exc:
            log.error("worker %s sent a malformed frame, closing its link: %s", self.worker_id, exc)
            self.close()
            return
        for message in messages:
            if self.worker_id is None:
                if not isinstance(message, Hello):
                    log.error("worker link did not start with hello; closing")
                    self.close()
                    return
                self.worker_id = message.worker_id
                self._handler.link_ready(self, message)
            else:
                self._handler.link_message(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._outgoing.clear()
        if self.worker_id is not None:
            self._handler.link_lost(self)

    # sending
    def send(self, message: Message) -> None:
        self.send_raw(encode(message))

    def send_raw(self, frame: bytes) -> None:
        """Queue an encoded frame; it is written at the end of this loop turn."""
        transport = self._transport
        if transport is None:
            return
        if len(self._outgoing) + transport.get_write_buffer_size() > MAX_PENDING_BYTES:
            # The worker is stuck; its clients are better served by a reconnect
            # and re-registration than by an unbounded buffer here.
            log.error("worker %s is not reading its link; closing it", self.worker_id)
            self.close()
            return
        self._outgoing += frame
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued now (done by itself at the end of the loop turn)."""
        self._flush_scheduled = False
        if self._transport is not None and self._outgoing:
            self._transport.write(bytes(self._outgoing))
        self._outgoing.clear()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def make_link_factory(
    handler: LinkHandler, loop: asyncio.AbstractEventLoop
) -> Callable[[], WorkerLink]:
    return lambda: WorkerLink(handler, loop)
