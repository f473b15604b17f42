"""Computations a page shows while they run: one result per model, the models computed at the same time (one worker
thread each, the cores split between them), partial results drawn as they arrive, finished results shared by every
session of the server. Not a page itself.

A job's ``run(progress)`` calls ``progress(partial)`` now and then; the page's ``draw(partial)`` shows it. When the
user moves a slider again, Streamlit stops this script run: the workers still running are told to stop at their next
progress call, so the CPU goes to the new value at once."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
import torch

CORES = os.cpu_count() or 1
REFRESH_S = 0.25  # how often the page looks for a new partial result


def digest(a: np.ndarray) -> str:
    """A short name for an array's contents, for a job's key."""
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


class Cancelled(Exception):
    """Raised inside a job whose page has moved on."""


@dataclass
class Job:
    key: Hashable  # names the result exactly: the model's key (app_pages.chooser) and every setting
    run: Callable[[Callable[[Any], None]], Any]  # run(progress) → the result
    draw: Callable[[Any], None] | None = None  # draws one partial result; None: none (short jobs)
    # torch threads: 1 for small batches (a few images: overhead-bound; 2 threads in a worker thread were slower,
    # 0.78 s against 0.61 s for 200 ascent steps on 10 images); None shares the cores among the jobs (large batches:
    # 100 images, 2.0 s against 2.9 s).
    threads: int | None = None


class Results:
    """The newest ``size`` finished results, shared by all sessions (thread-safe)."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Flight:
    """A job being computed, shared by every session that asks for the same key meanwhile."""

    def __init__(self):
        self.future, self.latest, self.waiting, self.stop = None, None, 0, threading.Event()


@st.cache_resource(show_spinner=False)
def _shared(size: int = 128) -> tuple[Results, ThreadPoolExecutor, dict, threading.Lock]:
    """The server's finished results, its workers (as many as cores, so sessions queue rather than oversubscribe),
    the jobs in flight by key, and the lock over them."""
    return Results(size), ThreadPoolExecutor(max_workers=CORES, thread_name_prefix="cnn-lab-live"), {}, threading.Lock()


def _board(job: Job, threads: int) -> Flight:
    """The flight computing ``job``: the one already in the air for its key, or a new one."""
    results, pool, flights, lock = _shared()
    with lock:
        flight = flights.get(job.key)
        if flight is None or flight.stop.is_set():  # none, or one stopping: nobody waited for it
            flight = flights[job.key] = Flight()

            def work() -> Any:
                torch.set_num_threads(threads)  # per worker thread (OpenMP): the jobs share the cores

                def progress(partial: Any) -> None:
                    if flight.stop.is_set():
                        raise Cancelled
                    flight.latest = partial

                try:
                    result = job.run(progress)
                    results.put(job.key, result)
                    return result
                finally:
                    with lock:
                        if flights.get(job.key) is flight:
                            del flights[job.key]

            flight.future = pool.submit(work)
        flight.waiting += 1
    return flight


def _leave(flight: Flight) -> None:
    """A session stops waiting; the last one to leave an unfinished flight stops it."""
    with _shared()[3]:
        flight.waiting -= 1
        if flight.waiting == 0:
            flight.stop.set()


def compute(jobs: list[Job], slots: list) -> list[Any]:
    """Each job's result, from the shared results or computed now (all at once), its partials drawn in its slot (an
    ``st.empty()`` per job with partials, e.g. in the model's column; None for the others). The page then draws the
    result into the same slot: the partials replace the previous result at once, and the result replaces the last
    partial."""
    results = _shared()[0]
    out = [results.get(j.key) for j in jobs]
    todo = [i for i, r in enumerate(out) if r is None]
    if not todo:
        return out
    flights = {i: _board(jobs[i], jobs[i].threads or max(1, CORES // len(todo))) for i in todo}
    shown = {i: None for i in todo}
    try:
        while any(not f.future.done() for f in flights.values()):
            for i, f in flights.items():
                if jobs[i].draw and f.latest is not None and f.latest is not shown[i]:
                    shown[i] = f.latest
                    with slots[i].container():
                        jobs[i].draw(f.latest)
            time.sleep(REFRESH_S)
        for i, f in flights.items():
            out[i] = f.future.result()
    finally:
        for f in flights.values():  # finished, rerun or error: a flight nobody waits for stops at its next progress
            _leave(f)
    return out
