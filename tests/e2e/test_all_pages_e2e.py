import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

PAGES = {
    "": "CNN Lab — a convolutional network on MNIST",
    "train": "Train: does BatchNorm help, and what does it cost?",
    "results": "Results and comparison",
    "inside": "Inside the network",
    "convolution": "Convolution by hand",
    "digit": "Your own digit",
    "attacks": "Attack playground",
    "robust": "Robustness lab",
}


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_opens_with_the_app_sidebar_and_no_error(server, page, path):
    page.goto(f"{server}/{path}")
    expect(page.get_by_role("heading", name=PAGES[path])).to_be_visible()
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("CNN Lab", exact=True)).to_be_visible()  # app.py ran, not the page file alone
    for link in ("Overview", "Train", "Results", "Inside the network"):
        expect(sidebar.get_by_role("link", name=link)).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("stException")).to_have_count(0)
