import pytest

from cnn_core.data import load_mnist
from cnn_core.training import Run, TrainConfig


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


def _tiny_config(**overrides) -> TrainConfig:
    """A run that takes a second or two on a CPU."""
    values = dict(train_subset=512, epochs=2, batch_size=64, device="cpu", seed=1)
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
