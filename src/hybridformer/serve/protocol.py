"""What uvicorn leaves to the deployment, for a server facing slow or hostile clients.

uvicorn's h11 protocol times out idle keep-alive connections (``timeout_keep_alive``) and answers 503 past
``limit_concurrency`` requests, but a connection that never completes its request headers is held for ever,
and every accepted connection costs a file descriptor. :class:`GuardedH11Protocol` is uvicorn's own protocol
with two additions: the headers must arrive within ``header_timeout`` seconds, and a connection over
``max_connections`` is closed as soon as it is accepted, so the process never runs out of descriptors. Each
kind of refusal is logged once per interval with a count (:class:`RateLimited`), never once per connection.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("hybridformer.serve")
FD_RESERVE = 64  # descriptors kept for the model files, logs and the listening socket


def connection_limits(requested: int | None) -> tuple[int, int]:
    """``(cap, backlog)``: the most connections held at once, and how many the event loop may accept in one burst
    (asyncio accepts up to ``backlog`` before the protocol can close any). Both fit under the soft descriptor limit
    (raised to the hard limit first, as far as the system allows), so ``accept`` never fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    soft = 1 << 16 if soft == resource.RLIM_INFINITY else soft
    backlog = min(2048, max(8, soft // 8))
    ceiling = max(1, soft - FD_RESERVE - backlog)
    return min(requested or ceiling, ceiling), backlog


class RateLimited(logging.Filter):
    """Lets one record per message template through every ``interval`` seconds, with how many were held back;
    installed on uvicorn's loggers too (its 'Exceeded concurrency limit.' is one line per request)."""

    def __init__(self, interval: float = 10.0, templates: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.interval, self.templates = interval, templates
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        if self.templates and not any(key.startswith(t) for t in self.templates):
            return True
        now = time.monotonic()
        if now - self.last.get(key, float("-inf")) < self.interval:
            self.held[key] = self.held.get(key, 0) + 1
            return False
        self.last[key] = now
        held = self.held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self.interval:g} s)"
        return True


REFUSALS = ("refused a connection", "closed a connection", "closed a request", "Exceeded concurrency limit",
            "Invalid HTTP request", "socket.accept() out of system resource")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header deadline and a cap on open connections (class attributes
    set by :func:`guarded_protocol`)."""

    header_timeout = 10.0
    max_connections = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_timer: asyncio.TimerHandle | None = None
        if len(self.connections) >= self.max_connections:
            log.warning("refused a connection: %d connections open is the cap (--limit-concurrency)",
                        self.max_connections)
            transport.abort()
            return
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self.header_timer is None and self._between_requests():
            self._await_headers()
        super().data_received(data)
        if self.header_timer is not None and not self._between_requests():
            self.header_timer.cancel()
            self.header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if self in self.connections:
            super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_headers(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self.header_timer = None
        if self._between_requests() and not self.transport.is_closing():
            log.warning("closed a connection that sent no complete request headers within %g s", self.header_timeout)
            self.transport.close()


def guarded_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("GuardedH11", (GuardedH11Protocol,), {"header_timeout": header_timeout,
                                                       "max_connections": max_connections})
