"""The server's live runs: started in worker threads, capped in number, saved when they finish.

Pure Python (no streamlit): the app keeps one ``RunRegistry`` in ``st.cache_resource`` and pages poll
``snapshot()`` of its runs. A run is never dropped while the server lives, so a lecturer can navigate
away, reload, and come back to it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace

from .data import Mnist
from .store import RunStore
from .training import Run, TrainConfig


class TooManyRuns(RuntimeError):
    """Starting would exceed the server's cap on concurrently active runs."""


class RunRegistry:
    def __init__(self, data: Callable[[], Mnist], store: RunStore, max_active: int = 2):
        self._data = data
        self.store = store
        self.max_active = max_active
        self._runs: dict[str, Run] = {}
        self._saved: dict[str, str] = {}  # run id → saved name, or "error: …"
        self._keep_stopped: dict[str, bool] = {}  # run id → save it if it is stopped
        self._lock = threading.Lock()

    # ----- queries ---------------------------------------------------------------------------
    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def runs(self) -> list[Run]:
        with self._lock:
            return list(self._runs.values())

    def active(self) -> list[Run]:
        return [r for r in self.runs() if not r.done]

    def threads_per_run(self) -> int:
        """Cores shared out among the runs training now (asked by each run before every step):
        on 2 cores one run gets 2 intra-op threads, two runs get 1 each (measured: README)."""
        return max(1, (os.cpu_count() or 1) // max(1, len(self.active())))

    def saved_name(self, run_id: str) -> str | None:
        return self._saved.get(run_id)

    def keeps_stopped(self, run_id: str) -> bool:
        return self._keep_stopped.get(run_id, False)

    # ----- actions ---------------------------------------------------------------------------
    def start(self, configs: list[TrainConfig], names: list[str] | None = None, keep_stopped: bool = True) -> list[Run]:
        """Start all ``configs`` together, or none of them (TooManyRuns) — never a half pair. A finished run is
        saved; a stopped one is saved as stopped (curves and best weights so far) when ``keep_stopped``."""
        data = self._data()
        names = names or [None] * len(configs)
        with self._lock:
            running = sum(not r.done for r in self._runs.values())
            if running + len(configs) > self.max_active:
                raise TooManyRuns(
                    f"{running} run(s) already training; this server allows {self.max_active} at a time. "
                    "Stop one or wait for it to finish."
                )
            runs = [Run(cfg, data, name=name, threads=self.threads_per_run) for cfg, name in zip(configs, names, strict=True)]
            for run in runs:
                run.callback = self._on_event(run)
                self._runs[run.id] = run
                self._keep_stopped[run.id] = keep_stopped
        for run in runs:
            run.start()
        return runs

    def start_pair(self, config: TrainConfig, keep_stopped: bool = True) -> tuple[Run, Run]:
        """The same config with and without BatchNorm: same seed, same data order, same everything else."""
        no_bn, bn = self.start([replace(config, batchnorm=False), replace(config, batchnorm=True)], keep_stopped=keep_stopped)
        return no_bn, bn

    def stop(self, run_id: str) -> None:
        run = self.get(run_id)
        if run is not None:
            run.stop()

    def stop_all(self) -> None:
        for run in self.active():
            run.stop()

    def _on_event(self, run: Run):
        def on_event(event: str, info: dict) -> None:
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
