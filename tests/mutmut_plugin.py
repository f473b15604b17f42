"""A pytest plugin for the mutation run only (`make mutation` loads it with ``-p tests.mutmut_plugin``; `make test`
never does). It mends two things mutmut 3.8's stats and test order miss about this suite; it uses mutmut's private
state, so a mutmut upgrade is checked here first.

- Cheapest first: mutmut stops a mutant at its first failing test but, in its forkserver mode (ours, for torch),
  passes the tests in set order, so a mutant of TrainConfig.validate could run a 26-second CLI test before the
  10-millisecond test that kills it. A test's cost is its duration as mutmut measured it plus the seconds its shared
  fixtures took to build (which mutmut does not count: the stats run writes them to ``fixture-seconds.json``).
- Shared fixtures' calls: mutmut picks a mutant's tests by which test called its function, so what ``tiny_run``
  computes (a whole Run) counted only for the first test that asked for it. Each fixture's calls are counted again
  for every test that uses it.
"""

import json
import os
import time
from pathlib import Path

import pytest

_FIXTURE_SECONDS = "fixture-seconds.json"  # written next to mutmut-stats.json by mutmut's stats run


def pytest_collection_modifyitems(items):
    """A mutant's tests, cheapest first (the module's docstring says why)."""
    stats = Path("mutmut-stats.json")  # mutmut runs the tests inside mutants/, where it keeps this file
    if os.environ.get("MUTANT_UNDER_TEST") and stats.exists():
        durations = json.loads(stats.read_text())["duration_by_test"]
        built = Path(_FIXTURE_SECONDS)
        setup = json.loads(built.read_text()) if built.exists() else {}
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0) + sum(setup.get(n, 0.0) for n in item.fixturenames))


def pytest_configure(config):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":  # mutmut's stats run
        config.pluginmanager.register(_MutmutStats())


class _MutmutStats:
    """In the stats run: each shared (session or module) fixture's calls to mutated functions, counted for every test
    that uses it, and the seconds it took to build (for the cheapest-first order)."""

    def __init__(self):
        from mutmut.state import state
        self.calls = state()._stats  # the set mutmut collects a test's calls to mutated functions in
        self.by_fixture: dict[str, set[str]] = {}  # by name: module fixtures of the same name are pooled
        self.seconds: dict[str, float] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        if fixturedef.scope == "function":
            yield
            return
        before = set(self.calls)
        self.calls.clear()
        t0 = time.perf_counter()
        yield
        name = fixturedef.argname
        self.seconds[name] = max(self.seconds.get(name, 0.0), time.perf_counter() - t0)
        self.by_fixture.setdefault(name, set()).update(self.calls)
        self.calls.update(before)

    def pytest_runtest_call(self, item):
        for name in item.fixturenames:
            self.calls.update(self.by_fixture.get(name, ()))

    def pytest_sessionfinish(self):
        Path(_FIXTURE_SECONDS).write_text(json.dumps(self.seconds, indent=1))


