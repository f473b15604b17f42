"""The Lecture page in Chromium: walking the assignment's lecture scene by scene with the bar's "next" link (each
scene opens its page with its section and the models chosen), and a lecture imported from a file, edited, exported
and kept across a reload."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from cnn_core.lecture import ASSIGNMENT, Scene, lecture_json

pytestmark = pytest.mark.e2e
HEADINGS = {"inside": "Inside the network", "train": "Train: does BatchNorm help, and what does it cost?",
            "results": "Results and comparison", "attacks": "Attack playground", "robust": "Robustness lab"}


def test_the_lecture_walks_scene_by_scene_with_each_section_and_the_chosen_models(server, page):
    page.goto(f"{server}/lecture?b=none")
    expect(page.get_by_role("link", name=ASSIGNMENT[0].title)).to_be_visible()
    page.get_by_role("link", name=ASSIGNMENT[0].title).click()
    for k, scene in enumerate(ASSIGNMENT, 1):
        expect(page.get_by_text(f"Scene {k} of {len(ASSIGNMENT)}: {scene.title}")).to_be_visible()
        expect(page.get_by_role("heading", name=HEADINGS[scene.page])).to_be_visible()
        expect(page.get_by_text(scene.note)).to_be_visible()
        for key, (value,) in scene.params().items():
            if key.endswith("section"):  # the page's section control shows the scene's section
                expect(page.get_by_role("radiogroup", name="Show").get_by_role("radio", name=value)).to_be_checked()
        if scene.page == "train":  # the form opens on the scene's training set
            expect(page.get_by_role("combobox", name="Training set")).to_have_value("5,000")
        assert "b=none" in page.url  # model B stays off, as chosen on the Lecture page
        expect(page.get_by_test_id("stException")).to_have_count(0)
        if k < len(ASSIGNMENT):
            page.get_by_role("link", name=re.compile(r"^next: ")).click()
    page.get_by_role("link", name="all scenes").click()
    expect(page.get_by_role("heading", name="Lecture")).to_be_visible()


def test_a_lecture_file_imports_exports_and_survives_a_reload(server, page, tmp_path):
    page.goto(f"{server}/lecture")
    upload = page.get_by_test_id("stFileUploaderDropzoneInput")
    bad = tmp_path / "bad.json"
    bad.write_text('{"cnn_lab_lecture": 1, "scenes": [{"title": "x", "page": "nowhere"}]}')
    upload.set_input_files(bad)
    expect(page.get_by_text(re.compile(r"bad.json was not imported: scene 1 \(x\): page 'nowhere' is not one of"))).to_be_visible()
    mine = [Scene("Occlusion, big patch", "inside", "inside_section=Occlusion&occ_patch=14", "Ask: where does P drop?"),
            Scene("Defences", "robust", "rob_section=Defences", "")]
    good = tmp_path / "mine.json"
    good.write_text(lecture_json(mine))
    upload.set_input_files(good)
    expect(page.get_by_text("Imported mine.json.")).to_be_visible()
    expect(page.get_by_role("link", name="Occlusion, big patch")).to_be_visible()
    page.locator(".st-key-down_0 button:visible").click()  # reorder: Defences first
    expect(page.get_by_text(re.compile(r"^1\. Defences"))).to_be_visible()
    page.wait_for_url(re.compile(r"lecture=[0-9a-f]{12}"))
    page.reload()
    expect(page.get_by_text(re.compile(r"^1\. Defences"))).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export this lecture (.json)").click()
    assert [s["title"] for s in json.loads(Path(download.value.path()).read_text())["scenes"]] == ["Defences", "Occlusion, big patch"]
    page.get_by_role("link", name="Occlusion, big patch").click()
    expect(page.get_by_text("Scene 2 of 2: Occlusion, big patch")).to_be_visible()
    expect(page.get_by_role("slider", name="Patch size")).to_have_value("14")
    # this view, added from the sidebar, becomes the lecture's third scene with its settings
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("button", name=re.compile("Add this view to the lecture")).click()
    page.get_by_label("Title").fill("Occlusion again")
    page.get_by_label("Teaching note").fill("Same view, asked twice")
    page.get_by_role("button", name="Add as the last scene").click()
    expect(page.get_by_text("Added as scene 3 of the lecture.")).to_be_visible()
    page.get_by_role("link", name="all scenes").click()
    expect(page.get_by_text("Same view, asked twice")).to_be_visible()
    href = page.get_by_role("link", name="Occlusion again").get_attribute("href")
    assert href.startswith("./inside?") and "occ_patch=14" in href and "scene=3" in href
