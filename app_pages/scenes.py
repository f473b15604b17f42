"""Scenes and the lecture, on every page: the link to this view, "Add this view to the lecture", and the bar that
leads from one scene of the lecture to the next. Not a page itself (the Lecture page is lecture.py).

A scene opens as a plain link in this tab, so it starts from its URL alone (as a shared link does): the URL is what
restores a view exactly, while in-app navigation would keep the widgets' current values. The lecture itself rides in
the URL as ``?lecture=<id>`` (a file in the lecture store), so a reload mid-lecture loses nothing."""

from __future__ import annotations

import html
from urllib.parse import urlencode

import streamlit as st

from cnn_core.lecture import ASSIGNMENT, LectureError, LectureStore, Scene, scene_query

# The app's pages: file in app_pages/ → menu title and icon, in menu order (app.py builds the navigation from it).
PAGES = {
    "overview": ("Overview", ":material/home:"),
    "train": ("Train", ":material/model_training:"),
    "results": ("Results", ":material/analytics:"),
    "inside": ("Inside the network", ":material/visibility:"),
    "convolution": ("Convolution by hand", ":material/grid_on:"),
    "digit": ("Your digit", ":material/draw:"),
    "attacks": ("Attack playground", ":material/bolt:"),
    "robust": ("Robustness lab", ":material/shield:"),
    "lecture": ("Lecture", ":material/slideshow:"),
}


@st.cache_data(max_entries=64, show_spinner=False)
def _load(root: str, ident: str) -> list[Scene] | None:
    """A stored lecture (files are named by their content, so a cached one never goes stale)."""
    return LectureStore(root).load(ident, list(PAGES))


def lecture() -> tuple[str | None, list[Scene]]:
    """(id, scenes) of the lecture the URL names, else (None, the assignment's lecture)."""
    ident = st.query_params.get("lecture")
    if ident:
        try:
            scenes = _load(str(LectureStore().root), ident)
        except (OSError, LectureError) as e:
            st.warning(f"The lecture `{ident}` of this link cannot be read ({e}): showing the assignment's lecture.")
        else:
            if scenes is not None:
                return ident, scenes
            st.warning(f"The lecture `{ident}` of this link is not on this server: showing the assignment's lecture.")
    return None, list(ASSIGNMENT)


def set_lecture(scenes: list[Scene]) -> None:
    """Make ``scenes`` this view's lecture: stored (a new file only if new) and named in the URL."""
    if list(scenes) == list(ASSIGNMENT):
        st.query_params.pop("lecture", None)
    else:
        st.query_params["lecture"] = LectureStore().save(scenes)


CARRIED = ("a", "b", "present")  # what follows the lecturer from scene to scene: the chosen models, presenter mode


def carried(but: dict | None = None) -> list[tuple[str, str]]:
    """The models chosen (model A and B, as the chooser keeps them) and presenter mode, except keys in ``but``."""
    s, q = st.session_state, st.query_params
    values = {k: q.get(k) or s.get(f"model_{k}") for k in ("a", "b")} | {"present": "1" if q.get("present") == "1" else None}
    return [(k, v) for k in CARRIED if (v := values[k]) and k not in (but or {})]


def scene_href(ident: str | None, scenes: list[Scene], k: int) -> str:
    """The relative link that opens scene ``k`` (1-based) of the lecture with the models chosen now (unless the scene
    names its own) and in presenter mode if it is on."""
    s = scenes[k - 1]
    extra = [("lecture", ident)] * bool(ident) + [("scene", str(k))] + carried(s.params())
    query = "&".join(q for q in (s.query, urlencode(extra)) if q)
    return f"./{'' if s.page == 'overview' else s.page}?{query}"


def lecture_href(ident: str | None) -> str:
    query = urlencode([("lecture", ident)] * bool(ident) + carried())
    return "./lecture" + (f"?{query}" if query else "")


def link(href: str, text: str) -> str:
    """An HTML link that opens in this tab (markdown links to the app's own pages would open a new one)."""
    return f'<a href="{html.escape(href)}" target="_self">{html.escape(text)}</a>'


def lecture_bar(page: str) -> None:
    """Above a scene opened from the lecture (?scene=k): where we are, the note, and links to the neighbours."""
    k = st.query_params.get("scene", "")
    if not k.isdigit():
        return
    ident, scenes = lecture()
    k = int(k)
    if not 1 <= k <= len(scenes) or scenes[k - 1].page != page:
        return
    parts = ([link(scene_href(ident, scenes, k - 1), "‹ previous")] if k > 1 else []) + \
            ([link(scene_href(ident, scenes, k + 1), f"next: {scenes[k].title} ›")] if k < len(scenes) else []) + \
            [link(lecture_href(ident), "all scenes")]
    st.markdown(f"**Scene {k} of {len(scenes)}: {html.escape(scenes[k - 1].title)}** &nbsp;·&nbsp; "
                + " &nbsp;·&nbsp; ".join(parts), unsafe_allow_html=True)
    if scenes[k - 1].note:
        st.caption(scenes[k - 1].note)


def _add_this_view(page: str) -> None:
    s = st.session_state
    _, scenes = lecture()
    query = scene_query({k: st.query_params.get_all(k) for k in st.query_params})
    set_lecture([*scenes, Scene(s.add_title.strip() or PAGES[page][0], page, query, s.add_note.strip())])
    s.add_title = s.add_note = ""
    st.toast(f"Added as scene {len(scenes) + 1} of the lecture.")


def scene_link(page: str) -> None:
    """At the foot of the sidebar, after the page ran: the link to this exact view (page, models, digits, every
    control bound to the URL, presenter mode), with the code block's own copy button, and "Add this view to the
    lecture"."""
    if not st.context.url or page == "lecture":
        return
    query = urlencode([(k, v) for k in st.query_params for v in st.query_params.get_all(k)])
    with st.sidebar:
        st.caption("Link to this view (copy it with the button on the right; opening it restores the view)")
        st.code(st.context.url + (f"?{query}" if query else ""), language=None, wrap_lines=True)
        with st.popover("Add this view to the lecture", icon=":material/playlist_add:"):
            st.text_input("Title", key="add_title", placeholder=PAGES[page][0])
            st.text_area("Teaching note", key="add_note", height=80)
            st.button("Add as the last scene", on_click=_add_this_view, args=(page,), key="add_scene")
