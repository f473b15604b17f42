"""A real `streamlit run` server and headless Debian Chromium driven by Playwright."""

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from bench.harness import CHROMIUM, CHROMIUM_ARGS, REPO, ServerError, start_server, stop_server
from cnn_core.store import SHIPPED_RUNS

# Conditions, not sleeps: web-first assertions retry up to this long (a cold server loads MNIST first).
expect.set_options(timeout=60_000)

OUTPUT = REPO / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Screenshots and the server log land here (git-ignored): look at them."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def server_runs(tmp_path_factory) -> Path:
    """The server's runs folder: a copy of the shipped runs; runs trained by the tests never land in checkpoints/."""
    runs_dir = tmp_path_factory.mktemp("e2e-runs")
    for name in SHIPPED_RUNS:
        if (REPO / "checkpoints" / name).is_dir():
            shutil.copytree(REPO / "checkpoints" / name, runs_dir / name)
    return runs_dir


@pytest.fixture(scope="session")
def server(server_runs):
    OUTPUT.mkdir(exist_ok=True)
    try:
        proc, url = start_server(server_runs, OUTPUT / "streamlit-server.log")
    except ServerError as exc:
        pytest.fail(str(exc))
    yield url
    stop_server(proc)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium), as .ci/run does")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()
