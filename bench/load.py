"""Load benchmark (issue 11): K sessions speaking Streamlit's own websocket protocol (no browser) open every page of
one real server at once. Prints, per K, the errors, p50 / p95 seconds per page and the server's resident memory.

    python -m bench.load                    # K = 1, 10, 30 against one server, warmed by one session first
    python -m bench.load --sessions 5 20
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bench.harness import REPO, rss_bytes, start_server, stop_server

TIMEOUT = 300  # seconds one page may take before it counts as an error


async def _run_page(ws, page_hash: str) -> tuple[float, str | None, ForwardMsg | None]:
    """Ask for one page; (seconds until its script finished, an error or None, the navigation message: the pages)."""
    msg = BackMsg(rerun_script=ClientState(page_script_hash=page_hash))
    t0 = time.perf_counter()
    await ws.send(msg.SerializeToString())
    error, navigation = None, None
    while True:
        fwd = ForwardMsg.FromString(await asyncio.wait_for(ws.recv(), TIMEOUT))
        kind = fwd.WhichOneof("type")
        if kind == "navigation":
            navigation = fwd.navigation
        elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element" and \
                fwd.delta.new_element.WhichOneof("type") == "exception":
            error = error or f"exception: {fwd.delta.new_element.exception.message[:200]}"
        elif kind == "script_finished":
            if fwd.script_finished != ForwardMsg.FINISHED_SUCCESSFULLY:
                error = error or f"script finished with status {fwd.script_finished}"
            return time.perf_counter() - t0, error, navigation


async def session(url: str) -> dict[str, tuple[float | None, str | None]]:
    """One session opening the default page, then every other page in the navigation's order: page → (seconds, error)."""
    out = {}
    try:
        async with websockets.connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=None, open_timeout=TIMEOUT) as ws:
            seconds, error, nav = await _run_page(ws, "")
            pages = [(p.page_name, p.page_script_hash, p.is_default) for p in nav.app_pages] if nav else []
            out[next((n for n, _, default in pages if default), "default page")] = (seconds, error)
            for name, page_hash, default in pages:
                if default:
                    continue
                out[name] = (await _run_page(ws, page_hash))[:2]
    except Exception as exc:  # a refused or dropped connection is an error of every page not yet opened
        out["(connection)"] = (None, f"{type(exc).__name__}: {exc}")
    return out


async def sessions_at_once(url: str, k: int) -> list[dict]:
    return await asyncio.gather(*(session(url) for _ in range(k)))


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def report(k: int, results: list[dict], rss: int, peak: int) -> list[str]:
    errors = [f"{page}: {e}" for r in results for page, (_, e) in r.items() if e]
    pages = list(dict.fromkeys(p for r in results for p in r if p != "(connection)"))
    lines = [f"| {k} | {page} | {statistics.median(v):.2f} | {percentile(v, 0.95):.2f} |"
             for page in pages if (v := [r[page][0] for r in results if page in r and r[page][0] is not None])]
    head = f"K = {k}: {len(errors)} errors, server RSS {rss / 2**30:.2f} GiB after, peak {peak / 2**30:.2f} GiB"
    return [head, *(f"  {e}" for e in errors[:10]), *lines]


class PeakRss(threading.Thread):
    """Samples a process's resident memory every 0.2 s; ``peak`` is the largest seen."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopped = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.peak = max(self.peak, rss_bytes(self.pid))


def main() -> None:
    from cnn_core.store import SHIPPED_RUNS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 30])
    args = ap.parse_args()
    out = REPO / "test-output"
    out.mkdir(exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="load-runs-"))
    for name in SHIPPED_RUNS:
        shutil.copytree(REPO / "checkpoints" / name, runs / name)
    proc, url = start_server(runs, out / "load-server.log")
    lines = []
    try:
        t0 = time.perf_counter()
        warm = asyncio.run(sessions_at_once(url, 1))
        print(f"warm-up: one session opened every page in {time.perf_counter() - t0:.1f} s; "
              f"RSS {rss_bytes(proc.pid) / 2**30:.2f} GiB", flush=True)
        print("\n".join(report(0, warm, rss_bytes(proc.pid), rss_bytes(proc.pid))[:3]))
        for k in args.sessions:
            sampler = PeakRss(proc.pid)
            sampler.start()
            results = asyncio.run(sessions_at_once(url, k))
            sampler.stopped.set()
            sampler.join()
            block = report(k, results, rss_bytes(proc.pid), max(sampler.peak, rss_bytes(proc.pid)))
            print("\n".join(block), flush=True)
            lines += block
    finally:
        stop_server(proc)
        shutil.rmtree(runs, ignore_errors=True)
    print("\n| sessions | page | p50 (s) | p95 (s) |\n| --- | --- | --- | --- |")
    print("\n".join(line for line in lines if line.startswith("|")))


if __name__ == "__main__":
    main()
