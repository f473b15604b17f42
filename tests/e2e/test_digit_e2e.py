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
    page.goto(f"{server}/digit")
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
    expect(page.get_by_text(re.compile(r"^145 images through the model"))).to_be_visible()  # 12×12 positions + 1
    page.get_by_role("link", name="Your digit").click()
    expect(canvas).to_be_visible()
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text("Draw a digit on the black square with the mouse.")).to_be_visible()
    expect(prediction).to_have_count(0)
