import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_raising_epsilon_breaks_more_digits_and_the_defences_table_shows(server, page, output_dir):
    page.goto(f"{server}/robust?b=none")  # model A alone
    expect(page.get_by_text(re.compile(r"^\d of 6 now misclassified · largest \|δ\| = 0\.200"))).to_be_visible()
    page.get_by_role("radio", name="PGD").check(force=True)
    slider = page.get_by_role("slider", name="ε")
    slider.focus()
    for _ in range(10):  # 0.20 → 0.30
        slider.press("ArrowRight")
    expect(page.get_by_text("6 of 6 now misclassified · largest |δ| = 0.300 ≤ ε = 0.30", exact=False)).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    page.screenshot(path=str(output_dir / "robust-attacks.png"))

    page.get_by_text("Defences", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Accuracy under attack \(FGSM dashed, PGD solid"))).to_be_visible()
    expect(page.get_by_text("adaptive attacker", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"An adaptive attacker also runs PGD through the defence"))).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=str(output_dir / "robust-defences.png"))


def test_attributions_under_attack_and_each_digits_smallest_flipping_budget(server, page, output_dir):
    page.goto(f"{server}/robust?a=baseline&b=adv-trained")  # the teaching pair, from the URL
    expect(page.get_by_role("heading", name="Attributions under attack")).to_be_visible()
    expect(page.get_by_text(re.compile(r"clean → predicted \d \(\d+%\) · adversarial → predicted \d \(\d+%\)"))
           ).to_have_count(12)  # six digits, for each model
    page.get_by_text("Smallest ε", exact=True).click()
    expect(page.get_by_text(re.compile(r"baseline: 3 digit\(s\) in [\d.]+ s · adv-trained: 3 digit\(s\)"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"needs \d+\.\d× the budget of"))).not_to_have_count(0)
    expect(page.locator(".js-plotly-plot")).to_have_count(3)  # one row per digit: the digit, then each model at its ε
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=str(output_dir / "robust-smallest-eps.png"))
