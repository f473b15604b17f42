"""The Lecture page: the assignment's scenes listed with their notes and links; moving and removing scenes saves a
new lecture named in the URL, which a fresh session opens; a link to an unknown lecture falls back with a warning."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from cnn_core.lecture import ASSIGNMENT, LectureStore, lecture_id

PAGE = "lecture.py"


def at_path() -> str:
    return str(Path(__file__).resolve().parents[2] / "app_pages" / PAGE)


def _titles(at) -> list[str]:
    return [m.value.split("**")[1].split(">", 1)[1].split("<")[0] for m in at.markdown if m.value.startswith("**")]


def test_the_assignment_lecture_is_listed_with_notes_and_scene_links(at):
    assert _titles(at) == [s.title for s in ASSIGNMENT]
    first = next(m.value for m in at.markdown if m.value.startswith("**1."))
    assert 'href="./inside?inside_section=Architecture&amp;scene=1" target="_self"' in first
    assert ASSIGNMENT[0].note in [c.value for c in at.caption]
    assert at.button(key="up_0").disabled and at.button(key="lecture_reset").disabled


def test_moving_and_removing_scenes_saves_a_new_lecture_in_the_url(at):
    at.button(key="down_0").click().run()
    expected = [ASSIGNMENT[1], ASSIGNMENT[0], *ASSIGNMENT[2:]]
    assert _titles(at) == [s.title for s in expected]
    assert at.query_params["lecture"] == lecture_id(expected)
    assert LectureStore(os.environ["CNN_LAB_LECTURES_DIR"]).load(lecture_id(expected), [s.page for s in ASSIGNMENT]) == expected
    at.button(key="drop_2").click().run()
    assert _titles(at) == [s.title for s in expected[:2] + expected[3:]]
    link = next(m.value for m in at.markdown if m.value.startswith("**1."))
    assert f"lecture={lecture_id(expected[:2] + expected[3:])}&amp;scene=1" in link  # scenes carry the lecture
    fresh = AppTest.from_file(at_path(), default_timeout=60)
    fresh.query_params["lecture"] = at.query_params["lecture"]
    assert _titles(fresh.run()) == _titles(at)  # a reload, or the link shared
    at.button(key="lecture_reset").click().run()
    assert _titles(at) == [s.title for s in ASSIGNMENT] and "lecture" not in at.query_params


def test_a_link_to_an_unknown_lecture_says_so_and_shows_the_assignment():
    at = AppTest.from_file(at_path(), default_timeout=60)
    at.query_params["lecture"] = "0123456789ab"
    at.run()
    assert not at.exception and "is not on this server" in at.warning[0].value
    assert _titles(at) == [s.title for s in ASSIGNMENT]


def test_edits_are_checked_before_they_are_saved(at):
    store = LectureStore(os.environ["CNN_LAB_LECTURES_DIR"])
    before = len(list(store.root.glob("*.json")))
    at.button(key="lecture_save").click().run()  # unchanged table: the same lecture, no new file
    assert not at.error and "lecture" not in at.query_params and len(list(store.root.glob("*.json"))) == before
