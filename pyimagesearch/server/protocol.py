"""uvicorn's HTTP/1.1 protocol (h11) with the deadline it lacks.

uvicorn times out only the idle wait between requests (`timeout_keep_alive`). A client
that sends half its headers, or nothing at all, keeps its connection forever, and so does
one still sending a body after the app has answered without reading it (a 413, a 401):
each byte restarts the keep-alive timer. Here both get `timeout_s` in all: headers must
arrive whole within it of their first byte (or of the connection), and a body no one reads
is let in (and dropped) for that long, so the client can still read the answer, then the
connection is closed. A body the app is reading is the app's to time out
(app.read_image_upload), so it can answer 408.
"""

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def timed_protocol(timeout_s):
    """An H11Protocol class for uvicorn.run(http=...) that closes stalled or slow clients."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"timeout_s": timeout_s})


class TimedH11Protocol(H11Protocol):
    timeout_s = 15.0

    def connection_made(self, transport):
        self._deadline = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data):
        super().data_received(data)
        if not self._owed_to_no_one():
            self._cancel()  # the headers are in: the app has the request
        elif self._deadline is None:
            self._arm()  # the first bytes of the next request's headers

    def on_response_complete(self):
        super().on_response_complete()
        if self._owed_to_no_one() and self._deadline is None:
            self._arm()  # the rest of a body the app did not read

    def connection_lost(self, exc):
        self._cancel()
        super().connection_lost(exc)

    def _owed_to_no_one(self):
        """True while the client sends what no app waits for: headers, or an unread body."""
        theirs = self.conn.their_state
        return theirs is h11.IDLE or (theirs is h11.SEND_BODY and self.conn.our_state is h11.DONE)

    def _arm(self):
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.timeout_s, self._too_slow)

    def _cancel(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self):
        self._deadline = None
        if self._owed_to_no_one() and not self.transport.is_closing():
            self.transport.close()
