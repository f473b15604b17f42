"""AppTest: the Your-digit page's states without a drawing (drawing itself is in the browser test)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

DIGIT = str(Path(__file__).resolve().parents[2] / "app_pages" / "digit.py")


def test_empty_canvas_upload_mode_and_clear():
    at = AppTest.from_file(DIGIT, default_timeout=120).run()
    assert not at.exception
    assert [i.value for i in at.info] == ["Draw a digit on the black square with the mouse."]
    assert "own_digit" not in at.session_state
    version = at.session_state.canvas_version
    next(b for b in at.button if b.key == "digit_clear").click().run()
    assert at.session_state.canvas_version == version + 1 and not at.exception
    at.radio(key="digit_source").set_value("upload").run()
    assert not at.exception and not at.info and not at.error  # waits for a file, no noise
