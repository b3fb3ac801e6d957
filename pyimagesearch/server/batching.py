"""Requests that arrive together share one model call; the model never runs on the event loop.

Each request's decoded image (S, S, 3) joins a bounded queue; one asyncio
task takes up to `max_batch` of them, stacks them (N, S, S, 3) and runs the
model in a single worker thread (the LiteRT interpreter and a Keras model are
not safe to call from two threads at once). While a batch runs, the next one
gathers, so under load batches fill without any waiting; `wait_s` only lets a
lone request wait a little for company.
"""

import asyncio
import collections
import concurrent.futures

import numpy as np


class QueueFullError(Exception):
    """Too many images are waiting for the model; the caller should retry later."""


class BatchingPredictor:
    """`await predict(image)` -> that image's probabilities, computed in a batch.

    `predict_batch(uint8 (N, S, S, 3)) -> (N, num_classes)` is called from one
    worker thread. `start()` and `stop()` run inside the event loop that
    serves requests (the app's lifespan).
    """

    def __init__(self, predict_batch, max_batch=32, wait_s=0.002, max_queue=256):
        self.predict_batch = predict_batch
        self.max_batch, self.wait_s, self.max_queue = max_batch, wait_s, max_queue
        self.batch_sizes = collections.Counter()  # model calls by batch size, for /health
        self._pending = collections.deque()  # (image, future), oldest first
        self._wake = None
        self._task = None
        self._executor = None

    async def start(self):
        self._wake = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pokedex-predict")
        self._task = asyncio.create_task(self._run(), name="pokedex-batcher")

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for _, future in self._pending:
            if not future.done():
                future.set_exception(QueueFullError("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._executor = None

    @property
    def queued(self):
        return len(self._pending)

    async def predict(self, image):
        """Probabilities for one uint8 (S, S, 3) image; QueueFullError when the queue is full."""
        if self._task is None:
            raise RuntimeError("BatchingPredictor.start() was not called (app lifespan)")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(f"{len(self._pending)} images are waiting for the model")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((image, future))
        self._wake.set()
        return await future

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if len(self._pending) < self.max_batch and self.wait_s > 0:
                    await asyncio.sleep(self.wait_s)  # requests that arrive together join
                count = min(self.max_batch, len(self._pending))
                batch = [self._pending.popleft() for _ in range(count)]
                batch = [(image, future) for image, future in batch if not future.done()]
                if not batch:  # every waiting client went away
                    continue
                images = np.stack([image for image, _ in batch])  # (N, S, S, 3) uint8
                try:
                    probabilities = await loop.run_in_executor(
                        self._executor, self.predict_batch, images)
                except Exception as error:  # the model failed: every waiter hears it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                self.batch_sizes[len(batch)] += 1
                for (_, future), row in zip(batch, probabilities):
                    if not future.done():
                        future.set_result(row)
