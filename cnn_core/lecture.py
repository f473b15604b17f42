"""A lecture: an ordered list of scenes, each a page of the app with its settings (the query string that the app's
"Link to this view" carries) and a teaching note. The assignment's lecture ships here; a lecturer's own is kept as a
small JSON file, named by its content, so a link that names it survives a reload and nothing ever overwrites it.

The file: ``{"cnn_lab_lecture": 1, "scenes": [{"title": …, "page": …, "query": …, "note": …}, …]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

FORMAT = 1
MAX_SCENES = 100  # a lecture, not a database: an import with more is refused
MAX_BYTES = 200_000
LECTURES_DIR_ENV = "CNN_LAB_LECTURES_DIR"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "lectures"
# Query keys that are not part of a scene: presenter mode is the lecturer's choice, and the lecture's own position.
NOT_SCENE = ("present", "lecture", "scene")
_ID = re.compile(r"[0-9a-f]{12}")


class LectureError(ValueError):
    """A lecture file or a scene that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class Scene:
    title: str
    page: str  # the page's file name in app_pages/ without ".py", e.g. "inside"
    query: str = ""  # the page's settings as a URL query string, e.g. "inside_section=Occlusion&occ_patch=10"
    note: str = ""  # what the lecturer says or asks here

    def params(self) -> dict[str, list[str]]:
        """The settings as query parameters (a key may repeat, e.g. a multiselect's values)."""
        return query_params(self.query)


def query_params(query: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in parse_qsl(query):
        out.setdefault(k, []).append(v)
    return out


def scene_query(params: dict[str, list[str]]) -> str:
    """Query parameters → a scene's query string, without the keys that are not part of a scene."""
    return urlencode([(k, v) for k, vs in params.items() if k not in NOT_SCENE for v in vs])


def scene(title: str, page: str, note: str, **params: str) -> Scene:
    return Scene(title, page, scene_query({k: [v] for k, v in params.items()}), note)


ASSIGNMENT = (
    scene("The network and its counts", "inside", "Walk the layers top to bottom: which sizes change, and why? Ask the "
          "room to guess where most of the parameters are before showing the table: fc1 holds almost all of them, the "
          "convolutions very few.", inside_section="Architecture"),
    scene("Train with and without BatchNorm", "train", "Start 'Train BN vs no-BN' on 5,000 digits: the two runs share "
          "seed, data order and settings, so the curves differ only by BatchNorm. Ask: does it reach 98% sooner? "
          "Does it cost time per epoch?", cfg_subset="5,000"),  # a select is in the URL by its label
    scene("Curves, test accuracy and random predictions", "results", "Training error, validation error and accuracy "
          "as training went, then the accuracy on all 10,000 test digits. The random test digits show the true and "
          "the predicted label; the most confident mistakes are often digits a person would misread too."),
    scene("conv1 filters", "inside", "Each 3×3 filter is a small edge or stroke detector: ask which direction each "
          "one responds to.", inside_section="Filters"),
    scene("conv2 filters", "inside", "conv2's kernels see 32 channels at once, so their 3×3 slices are hard to read "
          "alone: compare them with conv1's and ask why the activations tell us more here.",
          inside_section="Filters", conv2_overview="true"),
    scene("Activations, going deeper", "inside", "conv1's maps still look like the digit; after conv2 and the pools "
          "they become coarse and sparse, each map lighting up for a part of the digit.",
          inside_section="Activations", act_layer="conv2"),
    scene("Occlusion", "inside", "Slide a grey patch over the digit and plot the probability of its class at each "
          "position: dark cells are the places the network relies on. Is it the stroke or the background?",
          inside_section="Occlusion"),
    scene("Attack a: an image from noise", "attacks", "Gradient ascent on one logit from noise around 128: the "
          "network becomes sure of the class, yet the images look like noise. Ask why a classifier can be confident "
          "far from every digit it saw.", atk_section="Fooling images"),
    scene("Attack b: a digit that looks like another", "attacks", "Add β · mse to a chosen image: the result looks "
          "like that digit and is classified as the target. Drag β: too small and it is noise, too large and the "
          "target is lost.", atk_section="Targeted + prior"),
    scene("Attack c: adversarial noise", "attacks", "Update a noise added to a real digit, α = 1 / std(d): a faint "
          "noise flips the class. Then add each noise to ten fixed test digits: does it transfer?",
          atk_section="Adversarial noise"),
    scene("Class models", "attacks", "Start from a zero image and maximise S_c(I) − λ‖I‖²: what the network holds "
          "as the model of each class. Do they look like digits?", atk_section="Class models"),
    scene("Robustness: attacks with a budget", "robust", "FGSM and PGD move each pixel by at most ε: at ε = 0.2 "
          "most digits flip while still looking the same to us.", rob_section="Attacks"),
    scene("Robustness: defences", "robust", "How to prevent the attacks: input defences, and training on "
          "adversarial examples. Which ones survive an attacker who knows the defence?", rob_section="Defences"),
)


def lecture_json(scenes: list[Scene] | tuple[Scene, ...]) -> str:
    """The lecture as its file (stable: the same scenes give the same text)."""
    return json.dumps({"cnn_lab_lecture": FORMAT, "scenes": [asdict(s) for s in scenes]}, indent=1, ensure_ascii=False)


def lecture_id(scenes: list[Scene] | tuple[Scene, ...]) -> str:
    """12 hex digits of the file's SHA-256: the lecture's name in links and on disk."""
    return hashlib.sha256(lecture_json(scenes).encode()).hexdigest()[:12]


def check_scene(s: Scene, pages: list[str], where: str = "scene") -> Scene:
    """The scene, its text fields stripped, or LectureError naming what is wrong."""
    title, page, query, note = (str(v).strip() for v in (s.title, s.page, s.query, s.note))
    if not title:
        raise LectureError(f"{where}: the title is empty")
    if page not in pages:
        raise LectureError(f"{where} ({title}): page {page!r} is not one of {', '.join(pages)}")
    try:
        parse_qsl(query, strict_parsing=bool(query))
    except ValueError:
        raise LectureError(f"{where} ({title}): settings {query!r} are not a query string like a=1&b=x") from None
    return Scene(title, page, query, note)


def parse_lecture(text: str | bytes, pages: list[str]) -> list[Scene]:
    """A lecture file → its scenes, each checked; LectureError says what is wrong (for the import's message)."""
    if len(text) > MAX_BYTES:
        raise LectureError(f"the file has {len(text):,} bytes; a lecture file has at most {MAX_BYTES:,}")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise LectureError(f"not a lecture file: it is not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("cnn_lab_lecture") != FORMAT or not isinstance(data.get("scenes"), list):
        raise LectureError('not a lecture file: expected {"cnn_lab_lecture": 1, "scenes": [...]}, as the export writes')
    rows = data["scenes"]
    if not 0 < len(rows) <= MAX_SCENES:
        raise LectureError(f"a lecture has 1 to {MAX_SCENES} scenes; this file has {len(rows)}")
    scenes = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not {"title", "page"} <= row.keys():
            raise LectureError(f"scene {i}: expected an object with a title and a page")
        scenes.append(check_scene(Scene(*(row.get(f, "") for f in ("title", "page", "query", "note"))), pages, f"scene {i}"))
    return scenes


def moved(scenes: list[Scene], i: int, by: int) -> list[Scene]:
    """The scenes with scene ``i`` moved ``by`` places (−1: one up), kept within the list."""
    out = list(scenes)
    j = min(max(i + by, 0), len(out) - 1)
    out.insert(j, out.pop(i))
    return out


class LectureStore:
    """Lectures on disk as ``<root>/<id>.json``, named by their content: saving never overwrites another lecture."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root or os.environ.get(LECTURES_DIR_ENV) or DEFAULT_ROOT)

    def save(self, scenes: list[Scene]) -> str:
        ident = lecture_id(scenes)
        path = self.root / f"{ident}.json"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(lecture_json(scenes), encoding="utf-8")
            tmp.replace(path)
        return ident

    def load(self, ident: str, pages: list[str]) -> list[Scene] | None:
        """The lecture saved as ``ident``, or None (unknown, or not an id: a link cannot reach outside the folder)."""
        path = self.root / f"{ident}.json"
        if not _ID.fullmatch(ident) or not path.is_file():
            return None
        return parse_lecture(path.read_text(encoding="utf-8"), pages)
