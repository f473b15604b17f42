import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def runs_dir(tmp_path_factory):
    """The app's run store for these tests: a copy of the shipped runs, so nothing lands in checkpoints/."""
    d = tmp_path_factory.mktemp("runs")
    for name in ("baseline", "batchnorm"):
        shutil.copytree(REPO / "checkpoints" / name, d / name)
    os.environ["CNN_LAB_RUNS_DIR"] = str(d)
    import app_pages.common

    app_pages.common.RUNS_DIR = d
    return d
