import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_overview_renders_predictions_and_new_sample_changes_them(server, page, output_dir):
    page.goto(server)
    expect(page.get_by_text(re.compile(r"\d+ of 12 correct"))).to_be_visible()
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(chart.locator("image")).to_have_count(12)  # one raster per digit
    expect(page.get_by_text("799,078")).to_be_visible()
    indices = page.get_by_text(re.compile(r"^Test indices: "))
    first = indices.inner_text()
    page.get_by_role("button", name="New sample").click()
    expect(indices).not_to_have_text(first)
    page.screenshot(path=str(output_dir / "overview.png"), full_page=True)
