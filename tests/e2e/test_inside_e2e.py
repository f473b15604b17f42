import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_patch_size_slider_changes_the_occlusion_maps(server, page, output_dir):
    page.goto(f"{server}/inside?b=none")  # model A alone
    work = page.get_by_text(re.compile(r"^1,010 images through the model"))  # 10 digits × 10×10 patch corners + 10
    expect(work).to_be_visible()
    expect(page.get_by_text("10×10 patch, stride 2", exact=True)).to_be_visible()
    page.screenshot(path=str(output_dir / "inside-occlusion-10.png"))

    slider = page.get_by_role("slider", name="Patch size")
    slider.focus()
    for _ in range(4):
        slider.press("ArrowRight")
    expect(page.get_by_text("14×14 patch, stride 2", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^650 images through the model"))).to_be_visible()  # 10 × 8×8 + 10
    page.screenshot(path=str(output_dir / "inside-occlusion-14.png"))

    page.get_by_role("combobox", name="Model B, side by side").click()  # the model chooser: BatchNorm beside it
    page.get_by_role("option", name="BatchNorm", exact=True).click()
    expect(page.get_by_text(re.compile(r"^650 images through the model"))).to_have_count(2)
    page.get_by_text("Filters", exact=True).click()
    expect(page.get_by_text("conv1: 32 filters, 3×3 (one shared scale)")).to_have_count(2)
    page.screenshot(path=str(output_dir / "inside-filters.png"))


def test_a_link_with_digits_opens_them_and_they_follow_to_another_page(server, page):
    page.goto(f"{server}/inside?digits=7,42&b=none")
    expect(page.get_by_text(re.compile(r"^202 images through the model"))).to_be_visible()  # 2 × 10×10 + 2
    expect(page.get_by_text("#7 (true 9), class of interest 9", exact=False)).to_be_visible()
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_text(re.compile(r"^2 of 2 correct"))).to_be_visible()
