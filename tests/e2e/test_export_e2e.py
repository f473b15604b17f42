"""Figures for slides, in Chromium: a chart's camera icon saves an SVG with its whole legend inside the picture or a
PNG at 3× its size (the sidebar picks which); "Data (CSV)" saves its numbers; every chart text is at least 16 px."""

import csv
import re
import struct
from pathlib import Path

import pytest
from playwright.sync_api import expect

from cnn_core.robust_attacks import ATTACKS

pytestmark = pytest.mark.e2e
# the shipped runs' curves hold every registered attack (tests/unit/test_cli.py checks it)
LEGEND = [f"{run} — {a.label}" for run in ("baseline", "batchnorm", "adv-trained") for a in ATTACKS.values()]
SMALLEST_TEXT = """() => Math.min(...Array.from(document.querySelectorAll('[data-testid=stMain] .js-plotly-plot svg text'))
    .filter(t => t.textContent.trim() && t.getBoundingClientRect().width > 0)
    .map(t => parseFloat(getComputedStyle(t).fontSize)))"""


def _save_chart(page, chart, title: str):
    """Click the chart's camera icon, once its title says the format chosen ("Download plot" is plotly's for SVG)."""
    chart.hover()
    button = chart.locator(f".modebar-btn[data-title='{title}']")
    expect(button).to_have_count(1)
    with page.expect_download() as download:
        button.click()
    return download.value


def test_a_chart_saves_as_svg_with_its_legend_as_png_at_3x_and_its_numbers_as_csv(server, page):
    page.set_viewport_size({"width": 1920, "height": 1400})
    page.goto(f"{server}/robust?rob_section=Robustness+curves&b=none")
    chart = page.locator(".js-plotly-plot").first
    expect(chart.get_by_text("baseline — FGSM")).to_be_visible()
    assert page.evaluate(SMALLEST_TEXT) >= 16

    page.get_by_test_id("stSidebar").get_by_role("radio", name="SVG").click()
    svg = _save_chart(page, chart, "Download plot")
    assert svg.suggested_filename == "cnn-lab-rob_curves.svg"
    text = Path(svg.path()).read_text()
    assert all(name in text for name in LEGEND)
    page.set_content(text)  # drawn alone: every legend entry lies inside the picture (a PNG once cut it to "FGSl")
    width = page.evaluate("() => document.querySelector('svg').getBoundingClientRect().right")
    rights = page.evaluate("() => Array.from(document.querySelectorAll('.legendtext')).map(t => t.getBoundingClientRect().right)")
    assert len(rights) == len(LEGEND) and max(rights) < width

    page.goto(f"{server}/robust?rob_section=Robustness+curves&b=none")
    chart = page.locator(".js-plotly-plot").first
    expect(chart.get_by_text("baseline — FGSM")).to_be_visible()
    png = _save_chart(page, chart, "Download plot as a PNG")
    assert png.suggested_filename == "cnn-lab-rob_curves.png"
    w, h = struct.unpack(">II", Path(png.path()).read_bytes()[16:24])
    box = chart.bounding_box()
    assert (w, h) == (3 * round(box["width"]), 3 * round(box["height"]))

    with page.expect_download() as data:
        page.get_by_role("button", name=re.compile("Data \\(CSV\\)")).first.click()
    rows = list(csv.DictReader(Path(data.value.path()).read_text().splitlines()))
    assert data.value.suggested_filename == "cnn-lab-rob_curves.csv"
    assert len(rows) == len(LEGEND) * 7 and {r["x"] for r in rows} == {"0.0", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3"}


def test_chart_text_is_at_least_16_px_on_the_results_page(server, page):
    page.set_viewport_size({"width": 1920, "height": 1400})
    page.goto(f"{server}/results")
    expect(page.get_by_text("Confusion matrix (test set)")).to_be_visible()
    expect(page.locator("[data-testid=stMain] .js-plotly-plot")).to_have_count(4)
    assert page.evaluate(SMALLEST_TEXT) >= 16
