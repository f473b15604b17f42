import dataclasses
import json
import os
import time
from pathlib import Path

import pytest
import torch

from cnn_core.data import load_mnist
from cnn_core.model import for_inference
from cnn_core.store import RunStore
from cnn_core.training import Run, TrainConfig

_FIXTURE_SECONDS = "fixture-seconds.json"  # written next to mutmut-stats.json by mutmut's stats run


def pytest_collection_modifyitems(items):
    """Under mutmut (``make mutation``) a mutant's tests run cheapest first: it stops at the first failure, so a killed
    mutant then costs its cheapest failing test. mutmut sorts them so itself only without process isolation; with ours
    ("forkserver", pyproject.toml) it passes them in set order, and a mutant of TrainConfig.validate could run a
    26-second CLI test before the 10-millisecond test that kills it. A test's cost is its duration as mutmut measured
    it (the test alone) plus the seconds its shared fixtures took to build (``_MutmutStats``)."""
    stats = Path("mutmut-stats.json")  # mutmut runs the tests inside mutants/, where it keeps this file
    if os.environ.get("MUTANT_UNDER_TEST") and stats.exists():
        durations = json.loads(stats.read_text())["duration_by_test"]
        built = Path(_FIXTURE_SECONDS)
        setup = json.loads(built.read_text()) if built.exists() else {}
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0) + sum(setup.get(n, 0.0) for n in item.fixturenames))


def pytest_configure(config):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":  # mutmut's stats run (``make mutation``)
        config.pluginmanager.register(_MutmutStats())


class _MutmutStats:
    """What mutmut's stats run misses about shared (session or module) fixtures.

    - Which mutated functions they call. mutmut picks a mutant's tests by which test called its function, so what
      ``tiny_run`` computes (a whole Run) counted only for the first test that asked for it: a mutant of
      ``Run._restore_best`` never ran the test that checks the layout it restores, and "survived". Each fixture's
      calls are kept here and counted again for every test that uses it.
    - How long they take to build (mutmut times only the test itself), for the cheapest-first order above.

    A plugin, not conftest hooks: pytest asks a session fixture's hooks of the session, which sees no tests/ conftest.
    """

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


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def mnist_1k(mnist):
    """MNIST with only its first 1,000 test digits, for runs whose test numbers a test does not read digit by digit:
    testing all 10,000 took two thirds of a tiny run (3.6 s → 1.2 s), and these runs dominate the unit suite and the
    mutation run. ``tiny_run`` and the tests of the test phase itself keep all 10,000."""
    return dataclasses.replace(mnist, test_images=mnist.test_images[:1000], test_labels=mnist.test_labels[:1000])


def _tiny_config(**overrides) -> TrainConfig:
    """A run that takes a second or two on a CPU."""
    values = dict(train_subset=512, epochs=2, batch_size=64, device="cpu", seed=1, precision="fp32")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: tiny_config(**overrides) → a TrainConfig for a run of a second or two."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_run(mnist):
    """One finished tiny run, shared by tests that only read it."""
    run = Run(_tiny_config(), mnist, name="tiny").run()
    assert run.status == "finished", run.error
    return run


@pytest.fixture(scope="session")
def shipped():
    """The shipped models as the app caches them: eval mode, frozen, channels_last."""
    return {name: for_inference(RunStore().load_model(name)[0]) for name in ("baseline", "batchnorm")}


@pytest.fixture
def weights_kept(shipped):
    """Fails the test if a shipped model's state_dict (weights and BatchNorm statistics) changed by one bit."""
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in shipped.items()}
    yield
    for n, m in shipped.items():
        changed = [k for k, v in m.state_dict().items() if not torch.equal(before[n][k], v)]
        assert not changed, f"{n}: {changed} changed"
