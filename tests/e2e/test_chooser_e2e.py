"""The model chooser in a real browser: a run trained with the command line is picked on every page that shows a
model, its name shows there, and the pick follows to the next page through the sidebar."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

PAGES = {"Overview": "Predictions", "Inside the network": "Inside the network", "Attack playground": "Attack playground",
         "Your digit": "Your own digit", "Convolution by hand": "im2col: conv1 as one matrix product",
         "Robustness lab": "Robustness lab"}  # link → heading


def test_a_run_trained_with_the_command_line_is_picked_and_follows_the_user(server, server_runs, page, output_dir, cli):
    out = cli("--runs-dir", str(server_runs), "train", "--name", "e2e-mine", "--train-subset", "256", "--epochs", "1",
              "--val-points", "1", "--no-progress")
    assert out.returncode == 0, out.stderr
    page.goto(server)
    page.get_by_role("combobox", name=re.compile("^Model A")).click()
    page.get_by_role("option", name=re.compile(r"^e2e-mine \(\d+\.\d\d%\)$")).click()
    expect(page.get_by_text(re.compile(r"^e2e-mine \(\d+\.\d\d%\)$"))).to_be_visible()  # its column's label
    assert "a=e2e-mine" in page.url
    for link, heading in PAGES.items():
        page.get_by_test_id("stSidebar").get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        chooser = page.get_by_role("combobox", name=re.compile(r"^Model( A)?$"))  # "Model" where a page shows one
        expect(chooser).to_have_value(re.compile(r"^e2e-mine \("))
        expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=str(output_dir / "chooser-convolution.png"))
