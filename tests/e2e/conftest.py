"""A real `streamlit run` server and headless Debian Chromium driven by Playwright."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

# Conditions, not sleeps: web-first assertions retry up to this long (a cold server loads MNIST first).
expect.set_options(timeout=60_000)

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"
CHROMIUM = os.environ.get("CNN_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Screenshots and the server log land here (git-ignored): look at them."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def server_runs(tmp_path_factory) -> Path:
    """The server's runs folder: a copy of the shipped runs; runs trained by the tests never land in checkpoints/."""
    runs_dir = tmp_path_factory.mktemp("e2e-runs")
    for name in ("baseline", "batchnorm", "adv-trained"):  # test_cli checks all three are shipped
        if (REPO / "checkpoints" / name).is_dir():
            shutil.copytree(REPO / "checkpoints" / name, runs_dir / name)
    return runs_dir


@pytest.fixture(scope="session")
def server(server_runs):
    OUTPUT.mkdir(exist_ok=True)
    runs_dir = server_runs
    port = _free_port()
    log = open(OUTPUT / "streamlit-server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", "CNN_LAB_RUNS_DIR": str(runs_dir)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start; see {OUTPUT / 'streamlit-server.log'}")
        time.sleep(0.25)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


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
