import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def _stroke(page, box, points):
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
    page.mouse.up()


def test_drawing_a_one_gives_a_prediction_and_clear_empties_it(server, page, output_dir):
    page.goto(f"{server}/digit?b=none")  # model A alone
    expect(page.get_by_text("Draw a digit on the black square with the mouse.")).to_be_visible()
    canvas = page.locator("canvas").last
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    _stroke(page, box, [(170, 50 + 12 * i) for i in range(21)])  # one vertical stroke: a 1
    prediction = page.get_by_text(re.compile(r"^Prediction — Baseline \(no BatchNorm\): \d \(\d+%\)"))
    expect(prediction).to_be_visible()
    expect(prediction).to_contain_text("Baseline (no BatchNorm): 1 (")
    expect(page.get_by_text("what the model sees (28×28)")).to_be_visible()
    page.screenshot(path=str(output_dir / "digit-drawn.png"))

    # The drawn digit can be used on the other pages.
    page.get_by_role("link", name="Inside the network").click()
    page.get_by_role("radio", name="your digit").first.check(force=True)
    expect(page.get_by_text(re.compile(r"^101 images through the model"))).to_be_visible()  # 10×10 positions + 1
    page.get_by_role("link", name="Your digit").click()
    expect(canvas).to_be_visible()
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text("Draw a digit on the black square with the mouse.")).to_be_visible()
    expect(prediction).to_have_count(0)


def test_uploading_a_photo_like_digit_and_a_bad_file(server, page, output_dir, mnist, tmp_path):
    """A test 3 as dark ink on light paper, 8× larger and off-centre, as a PNG; then a file that is no image."""
    from PIL import Image

    three = 255 - mnist.test_images[30].numpy()  # test digit 30 is a 3
    assert mnist.test_labels[30] == 3
    paper = Image.new("L", (320, 260), 255)
    paper.paste(Image.fromarray(three).resize((224, 224)), (80, 20))
    paper.save(tmp_path / "three.png")
    (tmp_path / "notes.png").write_text("not an image")

    page.goto(f"{server}/digit")  # models A and B: both predictions
    page.get_by_role("radio", name="upload").check(force=True)
    page.locator("input[type=file]").set_input_files(str(tmp_path / "three.png"))
    prediction = page.get_by_text(re.compile(r"^Prediction — "))
    expect(prediction).to_contain_text("Baseline (no BatchNorm): 3 (")
    expect(prediction).to_contain_text("BatchNorm: 3 (")
    expect(page.locator(".js-plotly-plot")).to_be_visible()
    for img in page.get_by_test_id("stImage").locator("img").all():
        expect(img).to_have_js_property("complete", True)
    page.screenshot(path=str(output_dir / "digit-uploaded.png"))

    # the uploaded digit is the one the attack playground attacks
    page.get_by_role("link", name="Attack playground").click()
    page.get_by_text("Adversarial noise", exact=True).click()
    page.get_by_role("radio", name="your digit").first.check(force=True)
    expect(page.get_by_text("original: your digit")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^\d+ of 10 targets reached")).first).to_be_visible()

    page.get_by_role("link", name="Your digit").click()
    page.get_by_role("radio", name="upload").check(force=True)
    page.locator("input[type=file]").set_input_files(str(tmp_path / "notes.png"))
    expect(page.get_by_text(re.compile(r"^Can't use notes\.png: "))).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
