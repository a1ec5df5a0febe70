"""Micro-batching: one worker thread owns the judge and scores requests that arrive together in one forward batch.

OpenRLHF >= 0.10 sends ONE sample per request, many requests at once; without gathering them a GPU judge would run
at batch size 1.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass


class ServerBusy(RuntimeError):
    """The queue is full (503) or the server is shutting down."""


@dataclass
class ScoringJob:
    """One request's texts waiting in the queue, and the future its scores go to."""

    texts: list[str]
    future: Future
    enqueued: float
    length: int = 0  # longest text in characters: a cheap stand-in for its token count when grouping by length


class MicroBatcher:
    """One thread that owns the model and scores queued requests together.

    A batch closes when it holds ``max_batch_size`` texts or when its oldest request has waited ``max_wait_s``.
    When the worker is busy, requests pile up and the next batch takes them at once without waiting, so under load
    batches fill up by themselves and ``max_wait_s`` only costs latency when traffic is light.

    When more texts are queued than one batch holds, the batch is the oldest request plus the queued requests closest
    to it in length: a batch is as wide as its longest text, so mixing lengths pays for padding (offline scoring
    avoids that by sorting, as :meth:`SelfJudge.score_texts` does). Every batch takes the oldest queued request, so a
    request is scored within as many batches as there were requests queued ahead of it (nothing starves); the price
    is a longer latency tail under heavy load, in exchange for less padding and more throughput.
    """

    def __init__(
        self,
        score_fn: Callable[[list[str]], list[float]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_pending_texts: int,
    ) -> None:
        self._score_fn = score_fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_pending_texts = max_pending_texts
        self._queue: collections.deque[ScoringJob] = collections.deque()
        self._pending_texts = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # forward batches run (a request larger than max_batch_size counts once per call)
        self.texts = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="selfj-judge-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in progress, fail what is still queued, and join the worker."""
        with self._cond:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._pending_texts = 0
            self._cond.notify_all()
        for job in dropped:
            if not job.future.done():
                job.future.set_exception(ServerBusy("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def submit(self, texts: list[str]) -> Future:
        future: Future = Future()
        with self._cond:
            if self._stopping or self._thread is None:
                raise ServerBusy("the server is not accepting work (shutting down or not started)")
            if self._pending_texts + len(texts) > self.max_pending_texts:
                raise ServerBusy(f"{self._pending_texts} texts are already queued; retry shortly")
            self._queue.append(ScoringJob(texts, future, time.monotonic(), max(map(len, texts), default=0)))
            self._pending_texts += len(texts)
            self._cond.notify_all()
        return future

    def _next_batch(self) -> list[ScoringJob] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            deadline = self._queue[0].enqueued + self.max_wait_s
            while self._pending_texts < self.max_batch_size and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopping or not self._queue:
                return None
            batch = self._take_batch()
            self._pending_texts -= sum(len(job.texts) for job in batch)
            return batch

    def _take_batch(self) -> list[ScoringJob]:
        """Pop the oldest job and the queued jobs nearest to it in length, up to ``max_batch_size`` texts."""
        oldest = self._queue.popleft()
        batch, size = [oldest], len(oldest.texts)
        if self._pending_texts <= self.max_batch_size:  # everything fits: no choice to make
            while self._queue and size + len(self._queue[0].texts) <= self.max_batch_size:
                job = self._queue.popleft()
                batch.append(job)
                size += len(job.texts)
            return batch
        chosen: set[int] = set()
        for job in sorted(self._queue, key=lambda j: (abs(j.length - oldest.length), j.enqueued)):
            if size + len(job.texts) <= self.max_batch_size:
                batch.append(job)
                chosen.add(id(job))
                size += len(job.texts)
                if size == self.max_batch_size:
                    break
        self._queue = collections.deque(job for job in self._queue if id(job) not in chosen)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            texts = [text for job in batch for text in job.texts]
            try:
                scores = self._score_fn(texts)
                if len(scores) != len(texts):
                    raise RuntimeError(f"the judge returned {len(scores)} scores for {len(texts)} texts")
            except BaseException as err:  # every waiting request must hear about the failure
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
                if not isinstance(err, Exception):
                    raise
                continue
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for job in batch:
                end = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result(scores[start:end])
                start = end
