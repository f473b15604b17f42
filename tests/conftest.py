import contextlib
import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnn_core.cli import main as cli_main
from cnn_core.data import load_mnist
from cnn_core.model import for_inference
from cnn_core.store import LECTURE_PAIR, RunStore
from cnn_core.training import Run, TrainConfig


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
    return {name: for_inference(RunStore().load_model(name)[0]) for name in LECTURE_PAIR}


@pytest.fixture
def weights_kept(shipped):
    """Fails the test if a shipped model's state_dict (weights and BatchNorm statistics) changed by one bit."""
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in shipped.items()}
    yield
    for n, m in shipped.items():
        changed = [k for k, v in m.state_dict().items() if not torch.equal(before[n][k], v)]
        assert not changed, f"{n}: {changed} changed"


REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, subprocess_: bool = False) -> CliResult:
    """``python -m cnn_core ARGS``, in this process (``cnn_core.cli.main``: no second torch import and MNIST load,
    ~4 s a call saved) unless ``subprocess_``; argparse's exit becomes the return code either way."""
    if subprocess_:
        out = subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=600, env={**os.environ, **(env or {})})
        return CliResult(out.returncode, out.stdout, out.stderr)
    stdout, stderr, saved = io.StringIO(), io.StringIO(), {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli_main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def cli():
    """cli(*args, env=None, subprocess_=False) → CliResult(returncode, stdout, stderr) of ``python -m cnn_core``."""
    return run_cli
