"""Lecture: the scenes of a lecture in order, each with its teaching note; open, reorder, edit, export and import."""

import pandas as pd
import streamlit as st

from app_pages.common import explain
from app_pages.scenes import PAGES, lecture, link, scene_href, set_lecture
from cnn_core.lecture import ASSIGNMENT, LectureError, Scene, check_scene, lecture_json, moved, parse_lecture

st.title("Lecture")
st.markdown("The lecture's scenes in order: each opens a page with every setting in place, with its note and a link to "
            "the next scene above it. Add a scene from any page with **Add this view to the lecture** at the foot of "
            "the sidebar; reorder them here, edit them, and keep the lecture as a small file.")
ident, scenes = lecture()
s = st.session_state


def move(i: int, by: int) -> None:
    set_lecture(moved(scenes, i, by))


def remove(i: int) -> None:
    if len(scenes) > 1:
        set_lecture(scenes[:i] + scenes[i + 1:])


def import_file() -> None:
    upload = s.get("lecture_file")
    if upload is None:
        return
    try:
        set_lecture(parse_lecture(upload.getvalue(), list(PAGES)))
        s.lecture_message = ("success", f"Imported {upload.name}.")
    except LectureError as e:
        s.lecture_message = ("error", f"{upload.name} was not imported: {e}.")


for i, scene in enumerate(scenes):
    with st.container(border=True):
        text, buttons = st.columns([8, 1], vertical_alignment="center")
        text.markdown(f"**{i + 1}. {link(scene_href(ident, scenes, i + 1), scene.title)}** &nbsp;·&nbsp; "
                      f"{PAGES[scene.page][0]}", unsafe_allow_html=True)
        if scene.note:
            text.caption(scene.note)
        up, down, drop = buttons.columns(3, gap="small")
        up.button("", icon=":material/arrow_upward:", key=f"up_{i}", help="Move up", on_click=move, args=(i, -1),
                  disabled=i == 0)
        down.button("", icon=":material/arrow_downward:", key=f"down_{i}", help="Move down", on_click=move, args=(i, 1),
                    disabled=i == len(scenes) - 1)
        drop.button("", icon=":material/close:", key=f"drop_{i}", help="Remove this scene", on_click=remove, args=(i,),
                    disabled=len(scenes) == 1)

with st.expander("Edit the scenes (titles, pages, settings, notes; add or delete rows)"):
    table = pd.DataFrame([vars(sc) for sc in scenes], columns=["title", "page", "query", "note"])
    edited = st.data_editor(table, num_rows="dynamic", hide_index=True, width="stretch", key=f"lecture_editor_{ident}",
                            column_config={
                                "title": st.column_config.TextColumn("Title", required=True, width="medium"),
                                "page": st.column_config.SelectboxColumn("Page", options=list(PAGES), required=True),
                                "query": st.column_config.TextColumn("Settings", width="medium", help="The page's "
                                    "settings as in its link, after the '?': e.g. inside_section=Occlusion&occ_patch=10"),
                                "note": st.column_config.TextColumn("Teaching note", width="large")})
    if st.button("Save the edits", key="lecture_save"):
        try:
            rows = [check_scene(Scene(*(str(r[c]) if pd.notna(r[c]) else "" for c in table.columns)), list(PAGES), f"row {n}")
                    for n, r in enumerate(edited.to_dict("records"), 1)]
            if not rows:
                raise LectureError("a lecture needs at least one scene")
        except LectureError as e:
            st.error(f"Not saved: {e}.")
        else:
            set_lecture(rows)
            st.rerun()

a, b, c = st.columns(3)
a.download_button("Export this lecture (.json)", lecture_json(scenes), file_name="cnn-lab-lecture.json",
                  mime="application/json", icon=":material/download:", on_click="ignore")
b.file_uploader("Import a lecture file", type="json", key="lecture_file", on_change=import_file)
c.button("Back to the assignment's lecture", key="lecture_reset", on_click=set_lecture, args=(list(ASSIGNMENT),),
         disabled=ident is None)
if "lecture_message" in s:
    kind, message = s.pop("lecture_message")
    getattr(st, kind)(message)

explain("A **scene** is a page with all its settings, the same as the sidebar's **Link to this view**: opening it "
        "restores that exact view (models, digits, sliders), with the scene's note and a link to the next scene above "
        "it. The lecture starts as the assignment's order (architecture and counts, BatchNorm, filters, activations, "
        "occlusion, attacks a, b and c, class models, robustness). Any change is saved on this server as a small file "
        "named by its content and carried in the link (`?lecture=…`), so a reload or a shared link keeps the lecture; "
        "**Export** keeps it as a file to import on another machine.")
