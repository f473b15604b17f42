"""Latency benchmark (issue 11): a real `streamlit run` server, headless Chromium, a fixed script of interactions,
each with a value not seen before (no cache hits). Per interaction, median and max over the repetitions of:

- compute: the cnn_core computation alone, called in this process before the server starts (no contention);
- first change: from the input to the first result drawn in the browser (a figure, image, metric, table or progress
  bar added or changed; not text, a spinner, the control itself, nor the previous result taken away);
- settled: from the input to the last change of content, once the server has finished the run and the page has been
  quiet for 0.5 s.

    python -m bench.latency                 # every interaction, 3 repetitions; a Markdown table at the end
    python -m bench.latency --only β        # interactions whose name contains 'β'
    python -m bench.latency --memory 200    # server RSS after 20 and after 200 distinct interactions
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from playwright.sync_api import Page, sync_playwright
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.harness import CHROMIUM, CHROMIUM_ARGS, REPO, rss_bytes, start_server, stop_server

# What an interaction is for (figures, images, metrics, tables, progress bars): text does not count (a slider's own
# caption changes at once), nor do widgets, spinners, the status widget or the sidebar.
OBSERVER = r"""
(() => {
  const CONTENT = '[data-testid="stPlotlyChart"],[data-testid="stImage"],[data-testid="stMetric"],' +
    '[data-testid="stDataFrame"],[data-testid="stTable"],[data-testid="stGraphVizChart"],[data-testid="stProgress"]';
  const SKIP = '[data-testid="stSpinner"],[data-testid="stStatusWidget"],[data-testid="stSidebar"],' +
    '[data-testid="stWidgetLabel"],[data-testid="stToolbar"],header';
  const L = window.__lat = {t0: null, first: null, last: null, what: null};
  const el = n => n && (n.nodeType === 1 ? n : n.parentElement);
  const content = n => { const e = el(n); return !!e && !e.closest(SKIP) &&
    (!!e.closest(CONTENT) || (e.querySelector && !!e.querySelector(CONTENT))); };
  new MutationObserver(ms => {
    if (L.t0 === null) return;
    const now = performance.now();
    for (const m of ms) {
      // A result drawn (added, or changed in place) is a change; one taken away (the previous result, cleared for
      // its successor) only delays "settled": an empty place is not a first change.
      const added = m.type === 'childList' ? [...m.addedNodes] : [m.target];
      const hit = added.find(content);
      if (hit && L.first === null) {
        L.first = now; const e = el(hit); L.what = e && (e.closest('[data-testid]') || e).dataset.testid;
      }
      if (hit || (m.type === 'childList' && [...m.removedNodes].some(content))) L.last = now;
    }
  }).observe(document, {subtree: true, childList: true, characterData: true, attributes: true,
                        attributeFilter: ['src', 'd', 'transform', 'href', 'width', 'height', 'x', 'y']});
})();
"""


@dataclass
class Interaction:
    """One step of the script: open ``url``, ``prepare`` the view (not timed), then for repetition k ``act`` (timed)
    and ``undo`` (not timed). ``compute(ctx, k)`` runs the same computation in this process."""

    name: str
    url: str
    act: Callable[[Page, int], None]
    prepare: Callable[[Page], None] | None = None
    undo: Callable[[Page, int], None] | None = None
    compute: Callable[[dict, int], None] | None = None
    models: int = 1
    results: dict = field(default_factory=lambda: {"compute": [], "first": [], "settled": [], "server": []})


# --- driving the page -------------------------------------------------------------------------------------------


class Session:
    """A browser page on the server that knows when the server finished a script run (from its websocket)."""

    def __init__(self, browser, server: str, width: int = 1600, height: int = 2400):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(120_000)
        self.context.add_init_script(OBSERVER)
        self.page = self.context.new_page()
        self.server = server
        self.finished = 0  # script runs finished (whole page or fragment)
        self.page.on("websocket", self._on_websocket)

    def _on_websocket(self, ws) -> None:
        def frame(payload):
            if isinstance(payload, bytes | bytearray):
                msg = ForwardMsg.FromString(bytes(payload))
                if msg.WhichOneof("type") == "script_finished":
                    self.finished += 1
        ws.on("framereceived", frame)

    def open(self, path: str) -> float:
        """Load a page; seconds until it settled."""
        t0 = time.perf_counter()
        done = self.finished
        self.page.goto(f"{self.server}{path}")
        self.page.evaluate("window.__lat.t0 = performance.now()")
        self._wait(done, t0)
        return time.perf_counter() - t0

    def _wait(self, done: int, t0: float, quiet_ms: int = 500, timeout: float = 120) -> float:
        """Wait for a finished script run after ``done``, then for ``quiet_ms`` without content changes; the server's
        seconds since t0."""
        while self.finished <= done:
            self.page.wait_for_timeout(10)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("no script run finished")
        server = time.perf_counter() - t0
        while self.page.evaluate(f"performance.now() - (window.__lat.last ?? window.__lat.t0) < {quiet_ms}") or \
                self.page.locator('[data-testid="stSpinner"]').count():
            self.page.wait_for_timeout(20)
        return server

    def timed(self, act: Callable, *args) -> tuple[float, float, float]:
        """Do ``act(*args)``; (first change, settled, server finished) in seconds."""
        self.page.evaluate("Object.assign(window.__lat, {t0: performance.now(), first: null, last: null})")
        t0 = time.perf_counter()
        done = self.finished
        act(*args)
        server = self._wait(done, t0)
        lat = self.page.evaluate("window.__lat")
        if lat["first"] is None:
            raise RuntimeError("nothing on the page changed")
        self.first_what = lat["what"]
        return (lat["first"] - lat["t0"]) / 1000, (lat["last"] - lat["t0"]) / 1000, server

    def settle(self, act: Callable, *args) -> None:
        """Do ``act(*args)`` untimed and wait until the page is quiet."""
        done = self.finished
        self.page.evaluate("window.__lat.t0 = performance.now()")
        act(*args)
        self._wait(done, time.perf_counter())

    def close(self) -> None:
        self.context.close()


def press(name: str, key: str) -> Callable[[Page, int], None]:
    def act(page: Page, k: int) -> None:
        slider = page.get_by_role("slider").and_(page.locator(f'[aria-label="{name}"]')).first  # the label alone
        slider.focus()
        slider.press(key)
    return act


def click(role: str, name: str) -> Callable[[Page], None]:
    """Click a control; radios and switches are checked (their inputs are hidden under Streamlit's labels)."""
    def act(page: Page, *k) -> None:
        control = page.get_by_role(role, name=name, exact=True).first
        if role == "radio":
            control.check(force=True)
        elif role == "switch":
            control.click(force=True)
        else:
            control.click()
    return act


def section(name: str) -> Callable[[Page], None]:
    return lambda page: page.get_by_text(name, exact=True).first.click()


# --- the same computations in this process -----------------------------------------------------------------------


def context() -> dict:
    import torch

    from cnn_core.data import load_mnist
    from cnn_core.model import for_inference
    from cnn_core.store import RunStore

    torch.set_num_threads(2)
    store = RunStore(REPO / "checkpoints")
    models = {n: for_inference(store.load_model(n)[0]) for n in ("baseline", "batchnorm")}  # as the pages hold them
    return {"data": load_mnist(), "models": models}


def digits(ctx, n: int, seed: int = 0) -> np.ndarray:
    """The picker's random digits for ``seed`` (app_pages.digits.pick_digits), float32 in [0, 1]."""
    idx = np.random.default_rng(seed).choice(np.arange(10000), n, replace=False).tolist()
    return ctx["data"].test_images[idx].numpy().astype(np.float32) / 255.0, ctx["data"].test_labels[idx].tolist()


LOG = [m * 10.0**k for k in range(-6, 2) for m in (1, 2, 5) if m * 10.0**k <= 10.0]  # attacks.log_options(-6, 1)


def targeted(ctx, n_models: int, beta: float = 1e-2, step: float = 1000.0, seed: int = 0, looks=None) -> None:
    import torch

    from cnn_core import attacks as A

    like = looks if looks is not None else digits(ctx, 1, seed)[0] * 255
    for m in list(ctx["models"].values())[:n_models]:
        A.targeted_images(m, torch.from_numpy(like), beta=beta, start="noise", steps=200, step_size=step, sign=False,
                          clamp=True)


def occlude(ctx, n_models: int, patch: int = 10, seed: int = 0) -> None:
    import torch

    from cnn_core.inside import FILLS, INTERESTS, class_of_interest, occlusion

    images, labels = digits(ctx, 10, seed)
    x = torch.from_numpy(images)[:, None]
    for m in list(ctx["models"].values())[:n_models]:
        occlusion(m, x, class_of_interest(m, x, tuple(labels), INTERESTS[0]), patch, 2, FILLS[next(iter(FILLS))])


def universal(ctx, eps: float) -> None:
    from cnn_core.views import universal_view

    universal_view(ctx["models"]["baseline"], ctx["data"], eps)


def defence(ctx, eps: float) -> None:
    from cnn_core.views import defence_view

    defence_view(ctx["models"]["baseline"], ctx["data"], "median 3×3", eps)


def fgsm(ctx, n_models: int, eps: float) -> None:
    import torch

    from cnn_core import robust as R

    images, labels = digits(ctx, 6)
    for m in list(ctx["models"].values())[:n_models]:
        R.attack(m, torch.from_numpy(images)[:, None], torch.tensor(labels), "fgsm", eps)


def interactions() -> list[Interaction]:
    """The script. Values move away from the defaults, so repetition k always asks for a value not computed yet."""
    targeted_section = section("Targeted + prior")
    beta = LOG.index(1e-2)
    grid_toggle = click("switch", "Full 10×10 grid")
    return [
        Interaction("Attack: β, one model", "/attacks?b=none", press("β (log scale)", "ArrowRight"), targeted_section,
                    compute=lambda c, k: targeted(c, 1, beta=LOG[beta + 1 + k])),
        Interaction("Attack: β, two models", "/attacks", press("β (log scale)", "ArrowLeft"), targeted_section,
                    compute=lambda c, k: targeted(c, 2, beta=LOG[beta - 1 - k]), models=2),
        Interaction("Attack: step size, one model", "/attacks?b=none", press("Step size", "ArrowLeft"), targeted_section,
                    compute=lambda c, k: targeted(c, 1, step=(500.0, 200.0, 100.0, 50.0, 20.0)[k])),
        Interaction("Attack: Reshuffle digit, one model", "/attacks?b=none", click("button", "Reshuffle"), targeted_section,
                    compute=lambda c, k: targeted(c, 1, seed=k + 1)),
        Interaction("Attack: 10×10 grid on, one model", "/attacks?b=none", grid_toggle, targeted_section,
                    undo=lambda page, k: (grid_toggle(page), press("β (log scale)", "ArrowLeft")(page, k)),
                    compute=lambda c, k: targeted(c, 1, beta=LOG[beta - k], looks=_looks(c))),
        Interaction("Inside: occlusion patch, one model", "/inside?b=none", press("Patch size", "ArrowRight"),
                    compute=lambda c, k: occlude(c, 1, patch=11 + k)),
        Interaction("Inside: occlusion patch, two models", "/inside", press("Patch size", "ArrowLeft"),
                    compute=lambda c, k: occlude(c, 2, patch=9 - k), models=2),
        Interaction("Inside: Reshuffle 10 digits, occlusion, two models", "/inside", click("button", "Reshuffle"),
                    compute=lambda c, k: occlude(c, 2, seed=k + 1), models=2),
        Interaction("Inside: activations stage, two models", "/inside", click("radio", "pre-ReLU"),
                    section("Activations"), undo=click("radio", "post-ReLU"), models=2),
        Interaction("Inside: attributions Reshuffle, two models", "/inside", click("button", "Reshuffle"),
                    section("Attributions"), models=2),
        Interaction("Robustness: FGSM ε, two models", "/robust", press("ε", "ArrowRight"),
                    compute=lambda c, k: fgsm(c, 2, 0.21 + 0.01 * k), models=2),
        Interaction("Robustness: universal ε, shipped run (stored views)", "/robust", press("ε", "ArrowLeft"),
                    section("Universal perturbation"), compute=lambda c, k: universal(c, 0.29 - 0.01 * k)),
        Interaction("Robustness: universal ε, a run without stored views", f"/robust?a={UNSTORED}&b=none",
                    press("ε", "ArrowLeft"), section("Universal perturbation"),
                    compute=lambda c, k: universal(c, 0.29 - 0.01 * k)),
        Interaction("Robustness: defences ε, shipped run (stored views)", "/robust", press("ε", "ArrowRight"),
                    section("Defences"), compute=lambda c, k: defence(c, 0.21 + 0.01 * k)),
        Interaction("Robustness: defences ε, a run without stored views", f"/robust?a={UNSTORED}&b=none",
                    press("ε", "ArrowRight"), section("Defences"), compute=lambda c, k: defence(c, 0.21 + 0.01 * k)),
        Interaction("Overview: Reshuffle, two models", "/", click("button", "Reshuffle"), models=2),
    ]


def _looks(ctx) -> np.ndarray:
    from cnn_core import attacks as A

    d = ctx["data"]
    return d.test_images[A.one_per_class(d.test_images, d.test_labels)].float().numpy()


# --- running and reporting ---------------------------------------------------------------------------------------


UNSTORED = "baseline-unstored"  # the baseline's weights without its stored views: the Robustness lab computes them live


def copy_runs() -> Path:
    from cnn_core.store import SHIPPED_RUNS

    runs = Path(tempfile.mkdtemp(prefix="latency-runs-"))
    for name in SHIPPED_RUNS:
        shutil.copytree(REPO / "checkpoints" / name, runs / name)
    shutil.copytree(REPO / "checkpoints" / "baseline", runs / UNSTORED,
                    ignore=shutil.ignore_patterns("defences.json", "universal.npz"))
    info = json.loads((runs / UNSTORED / "run.json").read_text())  # a run's name is its run.json's, not its folder's
    (runs / UNSTORED / "run.json").write_text(json.dumps({**info, "name": UNSTORED}))
    return runs


def _open_results(page: Page) -> None:
    """Navigate to Results and wait for its title (a click racing the first page's last rerun is not lost)."""
    page.get_by_role("link", name="Results").click()
    page.get_by_role("heading", name="Results and comparison").wait_for()


def cold_starts(browser, reps: int, log: Path) -> dict[str, list[float]]:
    """First page after the server starts, then the first visit to Results (a fresh server each repetition)."""
    out = {"First page after start (Overview, two models)": [], "First visit to Results": []}
    for _ in range(reps):
        runs = copy_runs()
        proc, url = start_server(runs, log)
        s = Session(browser, url)
        try:
            out["First page after start (Overview, two models)"].append(s.open("/"))
            first, settled, _ = s.timed(_open_results, s.page)
            out["First visit to Results"].append(settled)
        finally:
            s.close()
            stop_server(proc)
            shutil.rmtree(runs, ignore_errors=True)
    return out


def run(only: str | None, reps: int, skip_compute: bool, log: Path, browser_too: bool = True) -> list[str]:
    script = [i for i in interactions() if not only or only.lower() in i.name.lower()]
    if not skip_compute and any(i.compute for i in script):
        ctx = context()
        for i in script:
            if i.compute:
                i.compute(ctx, reps)  # warm-up at a value the browser never asks for
                for k in range(reps):
                    t0 = time.perf_counter()
                    i.compute(ctx, k)
                    i.results["compute"].append(time.perf_counter() - t0)
    if not browser_too:
        return table(script, {})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        cold = cold_starts(browser, reps, log) if not only or only.lower() in "first page results" else {}
        runs = copy_runs()
        proc, url = start_server(runs, log)
        try:
            warm = Session(browser, url)
            for path in ("/", "/inside", "/attacks", "/robust"):  # the server's first loads are measured above
                warm.open(path)
            warm.close()
            for i in script:
                s = Session(browser, url)
                try:
                    s.open(i.url)
                    if i.prepare:
                        s.settle(i.prepare, s.page)
                    for k in range(reps):
                        first, settled, server = s.timed(i.act, s.page, k)
                        for key, v in zip(("first", "settled", "server"), (first, settled, server), strict=True):
                            i.results[key].append(v)
                        if i.undo:
                            s.settle(i.undo, s.page, k)
                    print(f"{i.name}: first {fmt(i.results['first'])} ({s.first_what}), settled {fmt(i.results['settled'])}, "
                          f"server {fmt(i.results['server'])}", flush=True)
                except Exception as exc:  # one broken step must not hide the others' numbers
                    print(f"{i.name}: FAILED {type(exc).__name__}: {exc}", flush=True)
                finally:
                    s.close()
        finally:
            stop_server(proc)
            shutil.rmtree(runs, ignore_errors=True)
        browser.close()
    return table(script, cold)


def memory(browser, n: int, log: Path) -> tuple[int, int]:
    """Server RSS after 20 and after ``n`` distinct interactions: Reshuffle on Occlusion (both models) and on
    Targeted + prior (both models), alternately; every click asks for digits never seen."""
    runs = copy_runs()
    proc, url = start_server(runs, log)
    try:
        inside, attack = Session(browser, url), Session(browser, url)
        inside.open("/inside")
        attack.open("/attacks")
        attack.settle(section("Targeted + prior"), attack.page)
        shuffle = click("button", "Reshuffle")
        after = {}
        for k in range(n):
            s = (inside, attack)[k % 2]
            s.settle(shuffle, s.page)
            if k + 1 in (20, n):
                after[k + 1] = rss_bytes(proc.pid)
                print(f"RSS after {k + 1} interactions: {after[k + 1] / 2**20:,.0f} MiB", flush=True)
        inside.close()
        attack.close()
        return after[20], after[n]
    finally:
        stop_server(proc)
        shutil.rmtree(runs, ignore_errors=True)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} / {max(values):.2f}" if values else "–"


def table(script: list[Interaction], cold: dict[str, list[float]]) -> list[str]:
    lines = ["| interaction | compute | first change | settled |", "| --- | --- | --- | --- |"]
    lines += [f"| {n} | – | – | {fmt(v)} |" for n, v in cold.items()]
    lines += [f"| {i.name} | {fmt(i.results['compute'])} | {fmt(i.results['first'])} | {fmt(i.results['settled'])} |"
              for i in script]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run the interactions whose name contains this")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-compute", action="store_true", help="skip the in-process compute timings")
    ap.add_argument("--compute-only", action="store_true", help="only the in-process compute timings")
    ap.add_argument("--memory", type=int, metavar="N", help="only the memory check: server RSS after 20 and N interactions")
    args = ap.parse_args()
    out = REPO / "test-output"
    out.mkdir(exist_ok=True)
    if args.memory:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            at20, at_n = memory(browser, args.memory, out / "latency-server.log")
        print(f"\nServer RSS after 20 interactions {at20 / 2**20:,.0f} MiB, after {args.memory} {at_n / 2**20:,.0f} MiB "
              f"({100 * (at_n / at20 - 1):+.0f}%)")
        return
    lines = run(args.only, args.reps, args.no_compute, out / "latency-server.log", not args.compute_only)
    print("\nSeconds, median / max of", args.reps, "repetitions:\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
