"""What every benchmarked child process shares: timestamped events and a timing callback.

A child appends one JSON line per event to the file named by $BENCH_EVENTS:
{"event": "first_step", "time": <time.time()>, ...}. The parent stamps
time.time() just before it starts the child, so "time to first training
step" is process start (interpreter and imports included) to the first batch.
Nothing here imports TensorFlow at module level.
"""

import json
import os
import time


def rss_mib():
    """This process's memory now, from /proc/self/status (Linux), in MiB.

    RssAnon is heap (arrays, TF buffers); RssFile is file-backed pages, which
    is where a memory-mapped cache shows up; VmHWM is the peak so far.
    """
    values = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    values[key] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return values


def emit(event, **fields):
    path = os.environ.get("BENCH_EVENTS")
    if not path:
        return
    record = {"event": event, "time": time.time(), **fields, **rss_mib()}
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def timing_callback():
    """A keras Callback emitting first_step and, per epoch, the training-only time.

    train_seconds runs from the epoch's start to its last training batch, so
    validation (and the project's BN re-estimation, which runs before it) is
    left out; epoch_seconds is the whole epoch as Keras reports it.
    """
    import keras

    class Timing(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first_step_seen = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = self.last_batch_end = time.time()
            self.steps = 0

        def on_train_batch_begin(self, batch, logs=None):
            if not self.first_step_seen:
                self.first_step_seen = True
                emit("first_step")

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            self.last_batch_end = time.time()

        def on_epoch_end(self, epoch, logs=None):
            now = time.time()
            emit("epoch", epoch=epoch + 1, steps=self.steps,
                 train_seconds=self.last_batch_end - self.epoch_started,
                 epoch_seconds=now - self.epoch_started,
                 **{key: float(value) for key, value in (logs or {}).items()})

    return Timing()
