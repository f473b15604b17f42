import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnn_core.store import SHIPPED_RUNS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def runs_dir(tmp_path_factory):
    """The app's run store for these tests: a copy of the shipped runs, so nothing lands in checkpoints/."""
    d = tmp_path_factory.mktemp("runs")
    for name in SHIPPED_RUNS:
        if (REPO / "checkpoints" / name).is_dir():
            shutil.copytree(REPO / "checkpoints" / name, d / name)
    os.environ["CNN_LAB_RUNS_DIR"] = str(d)
    os.environ["CNN_LAB_LECTURES_DIR"] = str(tmp_path_factory.mktemp("lectures"))  # lectures saved by the Lecture page
    import app_pages.loaders

    app_pages.loaders.RUNS_DIR = d
    return d


@pytest.fixture(scope="module")
def at(request):
    """The page named by the test module's PAGE (a file in app_pages/), run once and shared by the module's
    tests, which go on from each other's state."""
    page = AppTest.from_file(str(REPO / "app_pages" / request.module.PAGE), default_timeout=300).run()
    assert not page.exception, page.exception
    return page


@pytest.fixture
def captions():
    """captions(at) → all captions of the page, joined with ' | '."""
    return lambda at: " | ".join(c.value for c in at.caption)
