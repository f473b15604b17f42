import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _titles(page) -> list[str]:
    return page.locator(".js-plotly-plot .annotation-text").all_text_contents()


def test_moving_beta_changes_the_targeted_grid(server, page, output_dir):
    page.goto(f"{server}/attacks?b=none")  # one model: the checks read its figures
    expect(page.get_by_text(re.compile(r"^10 of 10 classified as their target"))).to_be_visible()
    expect(page.get_by_text("Cost C = logits[t] per step")).to_be_visible()
    page.screenshot(path=str(output_dir / "attacks-fooling.png"))

    page.get_by_text("Targeted + prior", exact=True).click()
    expect(page.get_by_text("C = logits[t] − β·MSE, β = 0.01")).to_be_visible()
    before = [t for t in _titles(page) if "MSE" in t]
    assert len(before) == 10
    page.screenshot(path=str(output_dir / "attacks-targeted-beta-0.01.png"))

    slider = page.get_by_role("slider", name="β (log scale)")
    slider.focus()
    for _ in range(3):  # 0.01 → 0.005 → 0.002 → 0.001
        slider.press("ArrowLeft")
    expect(page.get_by_text("C = logits[t] − β·MSE, β = 0.001")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^10 of 10 classified as their target"))).to_be_visible()
    after = [t for t in _titles(page) if "MSE" in t]
    assert len(after) == 10 and after != before
    mse = lambda titles: sum(float(re.search(r"MSE ([\d,]+)", t).group(1).replace(",", "")) for t in titles)  # noqa: E731
    assert mse(after) > 2 * mse(before)  # a weaker prior lets the images drift further from the 7
    page.screenshot(path=str(output_dir / "attacks-targeted-beta-0.001.png"))


def test_adversarial_noise_shows_noises_and_the_transfer_matrix(server, page, output_dir):
    page.goto(f"{server}/attacks?b=none")  # one model: the checks read its figures
    page.get_by_text("Adversarial noise", exact=True).click()
    expect(page.get_by_text(re.compile(r"^10 of 10 targets reached"))).to_be_visible()
    expect(page.get_by_text("noise made for target")).to_be_visible()
    page.screenshot(path=str(output_dir / "attacks-noise.png"))
