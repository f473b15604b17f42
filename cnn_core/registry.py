"""The server's live runs: started in worker threads, capped in number, queued beyond the cap, saved when they end.

Pure Python (no streamlit): the app keeps one ``RunRegistry`` in ``st.cache_resource`` and pages poll
``snapshot()`` of its runs. A run is never dropped while the server lives, so a lecturer can navigate
away, reload, and come back to it. When a class starts more runs than the server trains at once, the extra
ones wait in a first-come queue (groups such as a BN/no-BN pair start together) instead of being refused.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace

from .data import Mnist, training_digits
from .store import RunStore
from .training import Run, TrainConfig, estimate_seconds


class TooManyRuns(RuntimeError):
    """Starting would exceed what one browser session may hold, or a group is larger than the server's cap."""


class RunRegistry:
    def __init__(self, data: Callable[[], Mnist], store: RunStore, max_active: int = 2, max_per_owner: int = 6,
                 speed: Callable[[], dict] | None = None):
        """``max_active``: runs training at once; ``max_per_owner``: queued or active runs one owner (a browser
        session) may hold; ``speed``: measured images/s of one run while ``max_active`` train (``measure_speeds``),
        asked lazily, for the estimated start of queued runs."""
        self._data = data
        self.store = store
        self.max_active = max_active
        self.max_per_owner = max_per_owner
        self._speed = speed
        self._runs: dict[str, Run] = {}
        self._queue: list[list[Run]] = []  # groups waiting to start, oldest first
        self._owner: dict[str, str | None] = {}  # run id → the browser session that started it
        self._saved: dict[str, str] = {}  # run id → saved name, or "error: …"
        self._keep_stopped: dict[str, bool] = {}  # run id → save it if it is stopped
        self._settled: set[str] = set()  # runs ended and done with (saved, if they are to be)
        self._lock = threading.RLock()

    # ----- queries ---------------------------------------------------------------------------
    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def runs(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def active(self) -> list[Run]:
        """Runs started and not ended (queued ones are not active)."""
        return [r for r in self.runs() if not r.done and r.status != "queued"]

    def queued(self) -> list[Run]:
        with self._lock:
            return [r for group in self._queue for r in group]

    def threads_per_run(self) -> int:
        """Cores shared out among the runs training now (asked by each run before every step):
        on 2 cores one run gets 2 intra-op threads, two runs get 1 each (measured: README)."""
        return max(1, (os.cpu_count() or 1) // max(1, len(self.active())))

    def saved_name(self, run_id: str) -> str | None:
        return self._saved.get(run_id)

    def settled(self, run_id: str) -> bool:
        """Ended, and saved if it is to be saved: a page polls until its runs are settled (a run's status turns
        final a moment before its save completes)."""
        return run_id in self._settled

    def keeps_stopped(self, run_id: str) -> bool:
        return self._keep_stopped.get(run_id, False)

    def waiting(self, run_id: str) -> dict | None:
        """For a queued run: its group's place in the queue (1 = next) and the estimated seconds until it starts,
        by playing the queue forward: active runs end after their ETA, each group starts when enough runs have ended
        and lasts as long as its slowest run's estimate. None when the run is not queued."""
        with self._lock:
            ends = sorted(r.progress.get("eta_s") or 0.0 for r in self.active())
            ends += [0.0] * (self.max_active - len(ends))
            for place, group in enumerate(self._queue, start=1):
                start = ends[len(group) - 1]
                if any(r.id == run_id for r in group):
                    return {"place": place, "starts_in_s": start if self._speed else None}
                duration = max(self._estimate(r.config) for r in group)
                ends = sorted(ends[len(group):] + [start + duration] * len(group))
        return None

    def _estimate(self, config: TrainConfig) -> float:
        if self._speed is None:
            return 0.0
        return estimate_seconds(config, self._speed(), training_digits(config.train_subset, config.val_fraction))

    # ----- actions ---------------------------------------------------------------------------
    def start(self, configs: list[TrainConfig], names: list[str] | None = None, keep_stopped: bool = True,
              owner: str | None = None) -> list[Run]:
        """Start ``configs`` together now if the cap allows, else queue them as one group (started together, after
        the groups queued before it). A finished run is saved; a stopped one is saved as stopped (curves and best
        weights so far) when ``keep_stopped``. TooManyRuns if ``owner`` would hold more than ``max_per_owner``
        queued or active runs, or the group is larger than the cap."""
        if len(configs) > self.max_active:
            raise TooManyRuns(f"{len(configs)} runs cannot start together: this server trains {self.max_active} at a time.")
        return self._enqueue([configs], names, keep_stopped, owner, self.threads_per_run)

    def start_sweep(self, configs: list[TrainConfig], keep_stopped: bool = True, owner: str | None = None) -> list[Run]:
        """Runs to be compared (``sweep.sweep_configs``: they differ in one field). Every one trains with the same
        number of threads — the cores shared out as if the server were full — whatever else runs, so their seconds
        per epoch compare. A sweep that fits the cap starts as one group; a longer one queues run by run, in order
        (each cancellable on its own)."""
        fair = max(1, (os.cpu_count() or 1) // self.max_active)
        groups = [configs] if len(configs) <= self.max_active else [[c] for c in configs]
        return self._enqueue(groups, None, keep_stopped, owner, fair)

    def start_pair(self, config: TrainConfig, keep_stopped: bool = True, owner: str | None = None) -> tuple[Run, Run]:
        """The two-value sweep of BatchNorm: the same config without and with it, same seed, same data order."""
        no_bn, bn = self.start_sweep([replace(config, batchnorm=False), replace(config, batchnorm=True)], keep_stopped,
                                     owner)
        return no_bn, bn

    def _enqueue(self, groups: list[list[TrainConfig]], names: list[str] | None, keep_stopped: bool,
                 owner: str | None, threads) -> list[Run]:
        """Queue ``groups`` (each started whole, in order) after those already waiting; start what fits now."""
        data = self._data()
        configs = [c for g in groups for c in g]
        names = names or [None] * len(configs)
        with self._lock:
            held = sum(1 for r in self._runs.values() if not r.done and owner is not None and self._owner[r.id] == owner)
            if held + len(configs) > self.max_per_owner:
                raise TooManyRuns(f"you have {held} run(s) training or queued and asked for {len(configs)} more; one "
                                  f"browser may hold {self.max_per_owner}. Stop or cancel some, or wait for them to finish.")
            runs = [Run(cfg, data, name=name, threads=threads) for cfg, name in zip(configs, names, strict=True)]
            for run in runs:
                run.callback = self._on_event(run)
                run.queue()
                self._runs[run.id] = run
                self._owner[run.id] = owner
                self._keep_stopped[run.id] = keep_stopped
            new = iter(runs)
            self._queue += [[next(new) for _ in g] for g in groups]
        self._start_queued()
        return runs

    def stop(self, run_id: str) -> None:
        """Stop a run that trains; cancel a queued one together with its group (a pair never starts half)."""
        run = self.get(run_id)
        if run is None:
            return
        with self._lock:
            group = next((g for g in self._queue if run in g), None)
            if group is not None:
                self._queue.remove(group)
                for r in group:
                    r.cancel()
                    self._settled.add(r.id)
                return
        run.stop()

    def stop_all(self) -> None:
        for run in self.queued() + self.active():
            self.stop(run.id)

    def _start_queued(self) -> None:
        """Start queued groups, oldest first, while they fit under the cap (a later, smaller group never jumps ahead)."""
        with self._lock:
            starting = []
            while self._queue and len(self.active()) + sum(map(len, starting)) + len(self._queue[0]) <= self.max_active:
                starting.append(self._queue.pop(0))
            for group in starting:
                for run in group:
                    run.start()

    def _on_event(self, run: Run):
        def on_event(event: str, info: dict) -> None:
            if event == "ended":  # after "finished" or "stopped": the save, if any, is done
                self._settled.add(run.id)
                self._start_queued()
            if event != "finished" and not (event == "stopped" and self._keep_stopped[run.id]):
                return
            try:
                name = self._unique_name(run.name)
                self.store.save(run, name)
                self._saved[run.id] = name
            except Exception as exc:  # a failed save must not turn a finished run into a failed one
                self._saved[run.id] = f"error: {exc}"

        return on_event

    def _unique_name(self, name: str) -> str:
        candidate, k = name, 2
        while self.store.exists(candidate):
            candidate, k = f"{name}-{k}", k + 1
        return candidate
