import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from cnn_core.data import load_mnist
from cnn_core.model import for_inference
from cnn_core.store import RunStore
from cnn_core.training import Run, TrainConfig


def pytest_collection_modifyitems(items):
    """Under mutmut (``make mutation``) a mutant's tests run fastest first, by the durations mutmut measured: it stops
    at the first failure, so a killed mutant then costs its fastest failing test. mutmut sorts them so itself only
    without process isolation; with ours ("forkserver", pyproject.toml) it passes them in set order, and a mutant of
    TrainConfig.validate could run a 26-second CLI test before the 10-millisecond test that kills it."""
    stats = Path("mutmut-stats.json")  # mutmut runs the tests inside mutants/, where it keeps this file
    if os.environ.get("MUTANT_UNDER_TEST") and stats.exists():
        durations = json.loads(stats.read_text())["duration_by_test"]
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


def pytest_configure(config):
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":  # mutmut's stats run (``make mutation``)
        config.pluginmanager.register(_SharedFixtureCalls())


class _SharedFixtureCalls:
    """mutmut picks a mutant's tests by which test called its function in its stats run, so what a session fixture
    computes (``tiny_run`` trains a Run) counted only for the first test that asked for it: a mutant of
    ``Run._restore_best`` then never ran the test that checks the layout it restores, and "survived". This plugin
    keeps the calls each shared fixture makes and counts them again for every test that uses the fixture. It is
    registered as a plugin because pytest asks a session fixture's hooks of the session, which sees no tests/ conftest."""

    def __init__(self):
        from mutmut.state import state
        self.calls = state()._stats  # the set mutmut collects a test's calls to mutated functions in
        self.by_fixture: dict[str, set[str]] = {}  # by name: module fixtures of the same name are pooled

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        if fixturedef.scope == "function":
            yield
            return
        before = set(self.calls)
        self.calls.clear()
        yield
        self.by_fixture.setdefault(fixturedef.argname, set()).update(self.calls)
        self.calls.update(before)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        for name in item.fixturenames:
            self.calls.update(self.by_fixture.get(name, ()))
        yield


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
