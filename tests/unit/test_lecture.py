"""Lectures: the assignment's order, the file round trip, every way an import can be wrong, reordering, a view's query
as a scene, and the content-named store a link cannot escape."""

import json

import pytest

from cnn_core.lecture import (
    ASSIGNMENT,
    LectureError,
    LectureStore,
    Scene,
    lecture_id,
    lecture_json,
    moved,
    parse_lecture,
    scene_query,
)

PAGES = ["overview", "inside", "attacks", "robust", "train", "results"]


def test_the_assignment_lecture_follows_the_assignment():
    titles = [s.title for s in ASSIGNMENT]
    order = ["counts", "BatchNorm", "conv1", "conv2", "Activations", "Occlusion", "Attack a", "Attack b", "Attack c",
             "Class models", "Robustness"]
    positions = [next(i for i, t in enumerate(titles) if word in t) for word in order]
    assert positions == sorted(positions)
    assert all(s.note for s in ASSIGNMENT) and len(set(titles)) == len(titles)
    assert ASSIGNMENT[6].params() == {"inside_section": ["Occlusion"]}
    assert ASSIGNMENT[4].params() == {"inside_section": ["Filters"], "conv2_overview": ["true"]}


def test_a_lecture_file_round_trips_and_its_id_follows_its_content():
    scenes = [Scene("A", "inside", "inside_section=Filters", "note"), Scene("B", "overview")]
    text = lecture_json(scenes)
    assert json.loads(text)["cnn_lab_lecture"] == 1
    assert parse_lecture(text, PAGES) == scenes and parse_lecture(text.encode(), PAGES) == scenes
    assert lecture_id(scenes) == lecture_id(list(scenes)) != lecture_id(scenes[::-1])
    assert len(lecture_id(scenes)) == 12


@pytest.mark.parametrize("text, says", [
    ("not json", "not JSON"),
    ('{"scenes": []}', "not a lecture file"),
    ('{"cnn_lab_lecture": 1, "scenes": []}', "1 to 100 scenes; this file has 0"),
    ('{"cnn_lab_lecture": 1, "scenes": [{"title": "x"}]}', "scene 1: expected an object with a title and a page"),
    ('{"cnn_lab_lecture": 1, "scenes": [{"title": "x", "page": "lecture"}]}', "scene 1 (x): page 'lecture' is not one"),
    ('{"cnn_lab_lecture": 1, "scenes": [{"title": " ", "page": "inside"}]}', "scene 1: the title is empty"),
    ('{"cnn_lab_lecture": 1, "scenes": [{"title": "x", "page": "inside", "query": "a&&b"}]}', "not a query string"),
    ('{"cnn_lab_lecture": 1, "scenes": ' + json.dumps([{"title": "x", "page": "inside"}] * 101) + "}", "this file has 101"),
    ("x" * 200_001, "at most 200,000"),
])
def test_a_wrong_file_is_refused_with_a_message_that_says_what_is_wrong(text, says):
    with pytest.raises(LectureError) as e:
        parse_lecture(text, PAGES)
    assert says in str(e.value)


def test_fields_are_stripped_and_the_optional_ones_may_be_missing():
    text = '{"cnn_lab_lecture": 1, "scenes": [{"title": " T ", "page": "robust", "note": " n "}]}'
    assert parse_lecture(text, PAGES) == [Scene("T", "robust", "", "n")]


def test_moving_a_scene_keeps_the_others_in_order_and_stays_in_the_list():
    s = list("abcd")
    assert moved(s, 2, -1) == list("acbd") and moved(s, 0, 1) == list("bacd")
    assert moved(s, 0, -1) == s and moved(s, 3, 1) == s and moved(s, 3, -3) == list("dabc")
    assert s == list("abcd")  # not changed in place


def test_a_views_query_becomes_a_scene_without_presenter_mode_or_lecture_position():
    params = {"inside_section": ["Activations"], "a": ["baseline"], "present": ["1"], "lecture": ["0123456789ab"],
              "scene": ["3"], "m": ["x", "y"]}
    assert scene_query(params) == "inside_section=Activations&a=baseline&m=x&m=y"
    assert Scene("T", "inside", scene_query(params)).params() == {"inside_section": ["Activations"], "a": ["baseline"],
                                                                   "m": ["x", "y"]}
    assert scene_query({"digits": ["1,2"], "present": ["1"]}) == "digits=1%2C2"


def test_the_store_saves_by_content_never_overwrites_and_cannot_be_led_outside(tmp_path):
    store = LectureStore(tmp_path / "lectures")
    scenes = [Scene("A", "inside")]
    ident = store.save(scenes)
    assert ident == lecture_id(scenes) and store.load(ident, PAGES) == scenes
    assert store.save(scenes) == ident and len(list(store.root.iterdir())) == 1
    other = store.save([Scene("B", "inside")])
    assert other != ident and store.load(ident, PAGES) == scenes
    (tmp_path / "secret.json").write_text(lecture_json(scenes))
    for bad in ("../secret", "0123456789ab", "ABCDEF012345", ""):
        assert store.load(bad, PAGES) is None
