"""The HTTP/1.1 connection: uvicorn's httptools protocol with the limits a public server needs.

uvicorn's parser takes headers of any size and count and waits forever for a request on an
idle connection. This protocol adds, per connection:

* a limit on the header section's size (``max_header_bytes``) and on the number of headers
  (``max_headers``): over either, ``431 Request Header Fields Too Large`` and the connection is
  closed (nothing more of it is read);
* a header timeout: a connection whose request headers are not complete ``header_timeout``
  seconds after it opened (or after its last answer was written) is closed, with ``408`` when
  part of a request had arrived. uvicorn's own keep-alive timeout still closes a connection
  idle after an answer.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The largest header section accepted (request line included), and the most headers.
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
#: Seconds a connection may take to send a request's headers.
HEADER_TIMEOUT = 10.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size, header count and header-time limits."""

    max_header_bytes = MAX_HEADER_BYTES
    max_headers = MAX_HEADERS
    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True
        self._header_timer = None
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._header_count > self.max_headers:
            self._refuse(431, f"more than {self.max_headers} request headers")
        elif self._in_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(431, f"the request headers are over {self.max_header_bytes:,} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_count = 0
        self._arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= self.max_headers:  # past it the connection is refused after this read
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True  # the parser is past this request: what follows is the next one's headers
        self._header_bytes = 0

    # -- helpers ----------------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self.header_timeout > 0:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._in_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # an answer is being computed: the request's own timeout governs it
        if self._header_bytes:
            self._refuse(408, f"the request headers did not arrive within {self.header_timeout:g} s")
        else:
            self.transport.close()  # idle: nothing to answer

    def _refuse(self, status: int, message: str) -> None:
        """Answers ``status`` with TensorFlow Serving's error body and closes the connection."""
        self._cancel_header_timer()
        body = b'{"error": "' + message.encode("ascii") + b'"}'
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, _REASONS[status], len(body)))
        self.transport.write(head + body)
        self.transport.close()
