"""Holding Ctrl-C and SIGTERM back while a set of files is being written.

A checkpoint or the final outputs are written to temporaries and renamed at
the end. A Ctrl-C between two renames would leave a new report beside an old
model; a Ctrl-C during a checkpoint write would throw the checkpoint away.
Inside `deferred()` the signal is remembered and raised as KeyboardInterrupt
as soon as the block ends, so the files land together or not at all (a second
Ctrl-C still stops the block at once, for a user who really means it).
"""

import contextlib
import signal
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred():
    """Run the block with Ctrl-C/SIGTERM postponed to its end (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def remember(signal_number, frame):
        if received:  # the second one: the user insists
            raise KeyboardInterrupt
        received.append(signal_number)

    previous = {number: signal.signal(number, remember) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt
