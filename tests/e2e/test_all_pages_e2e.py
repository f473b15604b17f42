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
    "lecture": "Lecture",
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


def test_every_page_renders_offline_with_no_failed_request(server, browser):
    """A lecture hall may have no network: with every request to anything but the server blocked, each page (opened
    from the sidebar, as in a lecture) draws its heading and no request fails (the tab icon was a font-CDN icon)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside, failed = [], []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                  else (outside.append(route.request.url), route.abort()))
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
    page.on("response", lambda r: r.status >= 400 and failed.append((r.url, r.status)))
    page.goto(server)
    links = ["Overview", "Train", "Results", "Inside the network", "Convolution by hand", "Your digit",
             "Attack playground", "Robustness lab", "Lecture"]  # in PAGES' order
    for link, heading in zip(links, PAGES.values(), strict=True):
        page.get_by_test_id("stSidebar").get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        page.wait_for_load_state("networkidle")
        expect(page.get_by_test_id("stException")).to_have_count(0)
    context.close()
    assert outside == [] and failed == []


def test_the_assignment_report_downloads_from_results(server, page):
    import re
    from pathlib import Path

    from cnn_core.report import SECTIONS

    page.goto(f"{server}/results")
    with page.expect_download(timeout=120_000) as download:
        page.get_by_role("button", name=re.compile("Assignment report: baseline and batchnorm")).click()
    assert download.value.suggested_filename == "cnn-lab-report-baseline-batchnorm.html"
    html = Path(download.value.path()).read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", html) == list(SECTIONS) and html.count('class="plotly-graph-div"') == 17


def test_a_view_lives_in_the_url_and_opening_the_link_restores_it(server, page):
    """Scenes: every control is bound to the URL; the sidebar shows the link; a reload or a shared link is the view."""
    import re

    page.goto(f"{server}/inside?b=none")
    expect(page.get_by_text(re.compile(r"^1,010 images through the model"))).to_be_visible()
    slider = page.get_by_role("slider", name="Patch size")
    slider.focus()
    slider.press("ArrowRight")
    expect(page.get_by_text(re.compile(r"^820 images through the model"))).to_be_visible()  # 10 × 9×9 + 10
    page.wait_for_url(re.compile(r"occ_patch=11"))
    expect(page.get_by_test_id("stSidebar").locator("code")).to_contain_text("occ_patch=11")
    page.reload()
    expect(page.get_by_text(re.compile(r"^820 images through the model"))).to_be_visible()
    page.goto(f"{server}/robust?b=none&rob_section=Defences&def_eps=0.3")
    expect(page.get_by_text("ε = 0.30 = 76/255 grey levels")).to_be_visible()
    expect(page.get_by_text(re.compile(r"An adaptive attacker also runs PGD through the defence"))).to_be_visible()
    page.goto(f"{server}/attacks?b=none&atk_section=Class+models&cls_steps=50")
    expect(page.get_by_text(re.compile(r"^\d+ of 10 classified as their target · 50 steps"))).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_links_restore_the_train_form_the_compared_runs_and_the_convolution_settings(server, page):
    """Scenes on the other pages: the Train form (a lecture's "train BN vs no-BN on 5,000 digits"), Results' run and
    runs compared, every control of Convolution by hand, and Your digit's input come back from the link."""
    page.goto(f"{server}/train?cfg_subset=5%2C000&cfg_epochs=3&cfg_bn=true&cfg_optimizer=sgd")  # a select: its label
    form = page.get_by_test_id("stForm")
    expect(form.get_by_role("combobox", name="Training set")).to_have_value("5,000")
    expect(form.get_by_label("Epochs")).to_have_value("3")
    expect(form.get_by_role("checkbox", name="BatchNorm (single run)")).to_be_checked()
    expect(form.get_by_role("combobox", name="Optimizer")).to_have_value("sgd")
    page.goto(f"{server}/results?results_run=batchnorm+(shipped)&results_compare=baseline+(shipped)"
              "&results_compare=adv-trained+(shipped)")  # selects are in the URL by their labels
    expect(page.get_by_test_id("stMetricValue").first).to_have_text("99.53%")
    compare = page.get_by_test_id("stMultiSelect")
    expect(compare.get_by_text("adv-trained")).to_be_visible()
    expect(compare.get_by_text("batchnorm")).to_have_count(0)
    page.goto(f"{server}/convolution?conv_k=5&conv_p=0&conv_pool=none")
    expect(page.get_by_role("slider", name="Kernel K")).to_have_value("5")
    expect(page.get_by_role("slider", name="Padding P")).to_have_value("0")
    expect(page.get_by_role("combobox", name="Then max-pool")).to_have_value("none")
    page.goto(f"{server}/digit?digit_source=upload")
    expect(page.get_by_role("radio", name="upload")).to_be_checked()
    expect(page.get_by_test_id("stFileUploaderDropzone")).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
