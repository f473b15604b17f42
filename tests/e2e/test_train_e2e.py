"""The Train page in a real browser: live curves update by themselves, Stop stops, runs survive
navigation and reload, and the comparison appears when the runs end."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _configure(page, size_label, epochs):
    page.get_by_role("combobox", name="Training set").click()  # a streamlit selectbox: open it, pick an option
    page.get_by_role("option", name=size_label).click()
    epochs_input = page.get_by_label("Epochs", exact=True)
    epochs_input.fill(str(epochs))
    epochs_input.press("Tab")


def test_bn_vs_no_bn_live_stop_navigate_and_compare(server, page, output_dir):
    page.goto(f"{server}/train")
    expect(page.get_by_text("No run yet")).to_be_visible()

    expect(page.get_by_text(re.compile(r"the pair trains in about \d+ s on this machine"))).to_be_visible()

    # 1. A pair long enough to watch: the progress moves with nobody touching the page.
    _configure(page, "27,000", 3)
    page.get_by_role("button", name="Train BN vs no-BN").click()
    progress = page.get_by_text(re.compile(r"epoch \d/3 · step \d+/633")).first
    expect(progress).to_be_visible()
    seen = progress.inner_text()
    expect(progress).not_to_have_text(seen)  # updated by polling alone
    expect(page.locator(".js-plotly-plot", has_text="optimisation step")).to_have_count(1)  # both runs' curves in one
    live = page.get_by_text(re.compile(r"^conv1 filters at step \d+$")).first  # the live conv1 of the first run, polled
    expect(live).to_be_visible()
    live_seen = live.text_content()  # SVG text (a plotly title): no inner_text
    expect(live).not_to_have_text(live_seen)
    expect(page.get_by_text("test digit #0 through them (conv1 → ReLU)").first).to_be_visible()
    page.screenshot(path=str(output_dir / "train-live-conv1.png"))

    # Stop the no-BN run: it says so at once and is kept as stopped; the BN run carries on until stopped too.
    page.get_by_role("button", name="Stop", exact=True).first.click()
    stopped = page.get_by_text(re.compile(r"stopped at step \d+ of 633 after [\d.]+ s"))
    expect(stopped).to_be_visible()
    stopped_text = stopped.inner_text()
    page.get_by_role("button", name="Stop", exact=True).last.click()
    expect(page.get_by_text(re.compile(r"— stopped: its curves and best weights so far"))).to_have_count(2)
    assert stopped.first.inner_text() == stopped_text  # it stayed stopped

    # 2. A quick pair; leave for another page while it trains and come back: the runs are still there.
    _configure(page, "1,000 digits (seconds)", 1)
    page.get_by_role("button", name="Train BN vs no-BN").click()
    expect(page.get_by_text(re.compile(r"^bn-adam-1e-3-1ep-1k-")).first).to_be_visible()  # names say what a run is
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_text(re.compile(r"\d+ of 10 correct")).first).to_be_visible()  # A and B: one each
    page.get_by_role("link", name="Train").click()
    expect(page.get_by_text("Result", exact=True)).to_be_visible(timeout=120_000)
    verdict = page.get_by_text(re.compile(r"^BatchNorm (improved|lowered|left) test accuracy"))
    expect(verdict).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Saved as `?nobn-adam-1e-3-1ep-1k-"))).to_be_visible()
    page.screenshot(path=str(output_dir / "train-finished.png"))

    # A reload is a new browser session: the run ids in the URL reattach it to the same runs.
    assert "runs=" in page.url
    page.reload()
    expect(page.get_by_text("Result", exact=True)).to_be_visible()
    expect(verdict).to_be_visible()


def test_compare_the_two_convolutions_overlaid_with_a_table_and_a_sentence(server, page, output_dir):
    page.goto(f"{server}/train")
    expect(page.get_by_text("No run yet")).to_be_visible()
    _configure(page, "1,000 digits (seconds)", 1)
    page.get_by_role("combobox", name="Compare one setting").click()
    page.get_by_role("option", name="convolution", exact=True).click()
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text(re.compile(r"^╍╍ nobn-adam-1e-3-1ep-1k-unfold-"))).to_be_visible()  # its progress row
    expect(page.get_by_text("Result", exact=True)).to_be_visible(timeout=120_000)
    sentence = page.get_by_text(re.compile(r"^Test accuracy, best first: (builtin|unfold) \d+\.\d\d%"))
    expect(sentence).to_contain_text(re.compile(r"peak memory per step from \d+ MiB \(builtin\) to \d+ MiB \(unfold\)"))
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_contain_text("convolution")  # the swept setting leads the table
    expect(page.locator(".js-plotly-plot", has_text="optimisation step")).to_have_count(1)  # both runs overlaid in one
    page.screenshot(path=str(output_dir / "train-compare.png"))
