import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_overview_renders_predictions_and_reshuffle_changes_them(server, page, output_dir):
    page.goto(server)
    expect(page.get_by_text(re.compile(r"\d+ of 10 correct"))).to_have_count(2)  # models A and B, side by side
    chart = page.locator(".js-plotly-plot").first
    expect(chart).to_be_visible()
    expect(chart.locator("image")).to_have_count(10)  # one raster per digit
    expect(page.get_by_text("799,078")).to_be_visible()
    titles = chart.locator(".annotation-text")
    first = titles.all_text_contents()
    page.get_by_role("button", name="Reshuffle").click()
    expect(titles).not_to_have_text(first)  # all ten titles the same again: practically impossible
    page.screenshot(path=str(output_dir / "overview.png"), full_page=True)
