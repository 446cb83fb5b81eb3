"""Micro-batching: concurrent requests share one forward pass.

Greedy, never waiting: when the scoring thread is idle a request runs at once (no added latency
at low load); requests arriving while a pass is running queue up and the next pass takes them
together, up to `max_rows` sequences. A small request alone in its pass may be scored on the
event loop itself (`inline`): where a few rows take well under a millisecond, the hand-off to
the scoring thread and back costs more than the pass. Merged passes keep the thread, so that
under concurrent load the loop reads the next requests while a pass runs. On CPU merging
amortises per-call overhead; on a GPU it is what keeps the device busy. The model is read once
per pass, so every request of a pass is scored by the same model version even while a hot swap
happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class _Pending:
    x: np.ndarray
    mask: np.ndarray
    future: asyncio.Future


class MicroBatcher(Generic[T]):
    """Runs ``score(x, mask) -> T`` on a dedicated thread; T is sliceable by row ranges.

    ``inline(rows)`` says whether a request of that many rows, alone in its pass, is scored on
    the event loop instead."""

    def __init__(self, score: Callable[[np.ndarray, np.ndarray], T], max_rows: int,
                 on_batch: Callable[[int], None] | None = None,
                 inline: Callable[[int], bool] | None = None) -> None:
        self._score = score
        self._max_rows = max_rows
        self._on_batch = on_batch or (lambda rows: None)
        self._inline = inline or (lambda rows: False)
        # One thread: torch parallelises inside a pass; two passes at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fraud-score")
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task | None = None

    async def submit(self, x: np.ndarray, mask: np.ndarray) -> T:
        """Score one request's rows; resolves when its pass has finished."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(x, mask, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch = self._take()
            rows = sum(len(p.x) for p in batch)
            try:
                x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
                m = batch[0].mask if len(batch) == 1 else np.concatenate([p.mask for p in batch])
                if len(batch) == 1 and self._inline(rows):
                    results = self._score(x, m)
                else:
                    results = await loop.run_in_executor(self._executor, self._score, x, m)
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self._on_batch(rows)
            start = 0
            for pending in batch:
                end = start + len(pending.x)
                if not pending.future.done():
                    pending.future.set_result(results[start:end])
                start = end

    def _take(self) -> list[_Pending]:
        """Pop queued requests while they fit in `max_rows` (always at least one)."""
        taken = [self._queue.pop(0)]
        rows = len(taken[0].x)
        while self._queue and rows + len(self._queue[0].x) <= self._max_rows:
            rows += len(self._queue[0].x)
            taken.append(self._queue.pop(0))
        return taken

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
