"""``python -m cnn_core.bench``: training throughput of this engine vs a plain PyTorch loop vs a seed-style pipeline.

Engine = a real ``Run`` (whole data set in uint8 tensors, batches by indexing, channels_last, bf16 autocast where
the CPU or GPU has it natively, losses read from the device every few steps); its training images/s exclude the
validation and test passes. Plain loop = the textbook loop over the same ready float tensors: same model, same
Adam, same batch, float32, default memory layout, no per-step ``.item()``. Seed-style = what the student answers
do: a torchvision ``MNIST`` Dataset with per-item ``ToTensor()`` + ``Normalize`` (a PIL image per digit) and a
``DataLoader(batch_size=64, shuffle=True)``. All train the same model for the same number of images; every case is
warmed up once, rounds are interleaved so machine noise hits all alike, and the medians are compared as ratios.
Also measured: the data pipelines alone (no model).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from .data import CACHE_DIR, iterate_batches, load_mnist, prepare_raw, to_float
from .model import MNIST_MEAN, MNIST_STD, MnistCNN
from .training import Run, TrainConfig, resolve_device, resolve_precision


def _seed_loader(batch_size: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    root = prepare_raw() or CACHE_DIR
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    return DataLoader(datasets.MNIST(str(root), train=True, transform=tf), batch_size=batch_size, shuffle=True)


def _model(device, normalizes: bool) -> tuple[MnistCNN, torch.optim.Optimizer]:
    model = MnistCNN(generator=torch.Generator().manual_seed(0)).to(device)
    if not normalizes:  # the seed pipeline normalizes in the transform: make the model's own step a no-op
        model.mean.fill_(0.0)
        model.std.fill_(1.0)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _engine(data, images: int, device: str, precision: str = "auto", batch_size: int = 128) -> float:
    """Training images/s of a real Run (one epoch of ``images`` digits; validation and test not counted)."""
    cfg = TrainConfig(train_subset=images, epochs=1, batch_size=batch_size, device=device, precision=precision, val_points=1)
    run = Run(cfg, data).run()
    assert run.status == "finished", run.error
    return run.epochs[0]["images_per_s"]


def _timed(batches, n_images: int, step=None, device=None) -> float:
    """Images per second over the first ``n_images`` of ``batches`` (after one warm-up batch)."""
    it = iter(batches)
    x, y = next(it)
    if step:
        step(x.to(device), y.to(device))
    seen, t0 = 0, time.perf_counter()
    for x, y in it:
        if step:
            step(x.to(device), y.to(device))
        seen += len(y)
        if seen >= n_images:
            break
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def _train_step(model, opt):
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def concurrency(data, threads: int, n_runs: int, images: int) -> list[float]:
    """Training images/s of each of ``n_runs`` runs trained at the same time in threads of one
    process (as the app's registry does), with ``threads`` intra-op threads."""
    cfg = TrainConfig(train_subset=images, epochs=1, batch_size=128, device="cpu")
    runs = [Run(cfg, data, threads=threads) for _ in range(n_runs)]
    for r in runs:
        r.start()
    for r in runs:
        r.wait()
    return [r.epochs[0]["images_per_s"] for r in runs]


def main_concurrency(args) -> int:
    data = load_mnist()
    rows = {}
    for _ in range(args.rounds):
        for threads in (1, 2):
            for n_runs in (1, 2):
                rows.setdefault((threads, n_runs), []).append(concurrency(data, threads, n_runs, args.images))
    print(f"{os.cpu_count()} cores, torch {torch.__version__}; training images/s per run, median of {args.rounds} rounds")
    for (threads, n_runs), samples in sorted(rows.items()):
        per_run = [statistics.median(s[i] for s in samples) for i in range(n_runs)]
        print(f"  {threads} intra-op thread(s), {n_runs} run(s) at once: "
              f"{' + '.join(f'{v:,.0f}' for v in per_run)} = {sum(per_run):,.0f} images/s in total")
    return 0


def main_attacks(args) -> int:
    """All 10 targets of a fooling-image attack in one batch vs one target at a time (100 steps each)."""
    from .attacks import CLASSES, fooling_cost, gradient_ascent, noise_image, scores
    from .store import RunStore

    model = RunStore().load_model("baseline")[0].requires_grad_(False)

    def seconds(targets: list[torch.Tensor]) -> float:
        start = time.perf_counter()
        for t in targets:
            gradient_ascent(model, noise_image(len(t)), lambda x, t=t: fooling_cost(scores(model, x), t), 100, 1000.0)
        return time.perf_counter() - start

    cases = {"10 targets in one batch": [CLASSES], "one target at a time": [torch.tensor([k]) for k in range(10)]}
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, targets in cases.items():
            results[name].append(seconds(targets))
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fooling images for 10 classes, 100 steps, "
          f"median of {args.rounds} interleaved rounds")
    for name, v in med.items():
        print(f"  {name:<26} {v:6.2f} s")
    print(f"batched / one at a time: {med['one target at a time'] / med['10 targets in one batch']:.1f}× faster")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cnn_core.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6400, help="images per measurement (default 6400)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts to measure the training cases with (default 1,2)")
    ap.add_argument("--concurrency", action="store_true",
                    help="instead: one vs two simultaneous runs with 1 and 2 intra-op threads (CPU)")
    ap.add_argument("--attacks", action="store_true", help="instead: attack targets batched vs one at a time (CPU)")
    args = ap.parse_args(argv)
    if args.concurrency:
        return main_concurrency(args)
    if args.attacks:
        return main_attacks(args)
    device = resolve_device(args.device)
    data = load_mnist()
    idx = torch.arange(len(data.train_labels))
    gen = torch.Generator().manual_seed(0)
    images, labels = data.train_images.to(device), data.train_labels.to(device)

    ready = to_float(data.train_images[: args.images]).to(device), data.train_labels[: args.images].to(device)
    plain = [(ready[0][i : i + 128], ready[1][i : i + 128]) for i in range(0, args.images, 128)]
    precision = resolve_precision("auto", device)
    training = {
        f"engine (Run, {precision}), batch 128": lambda: _engine(data, args.images, device.type),
        "engine (Run, fp32), batch 128": lambda: _engine(data, args.images, device.type, "fp32"),
        "plain loop, batch 128": lambda: _timed(plain, args.images, _train_step(*_model(device, True)), device),
        "seed-style, batch 64": lambda: _timed(_seed_loader(64), args.images, _train_step(*_model(device, False)), device),
    }
    cases = {f"{name}, {t} thread(s)": (fn, t) for t in map(int, args.threads.split(",")) for name, fn in training.items()}
    cases["data only: engine, batch 64"] = (lambda: _timed(iterate_batches(images, labels, idx, 64, gen, device), 6 * args.images), None)
    cases["data only: seed-style, batch 64"] = (lambda: _timed(_seed_loader(64), args.images), None)
    results: dict[str, list[float]] = {k: [] for k in cases}
    for round_ in range(args.rounds + 1):  # round 0 warms every case up (kernels, caches) and is not counted
        for name, (fn, threads) in cases.items():
            torch.set_num_threads(threads or os.cpu_count() or 1)
            value = fn()
            if round_:
                results[name].append(value)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"device {device}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"{args.images} images per measurement, median of {args.rounds} interleaved rounds after a warm-up round")
    for name, v in med.items():
        print(f"  {name:<44} {v:>12,.0f} images/s")
    for t in map(int, args.threads.split(",")):
        eng, eng32, loop, seed = (med[f"{name}, {t} thread(s)"] for name in training)
        print(f"{t} thread(s): engine / plain loop = {eng / loop:.2f}×  (fp32 engine / plain loop = {eng32 / loop:.2f}×)  "
              f"engine / seed-style = {eng / seed:.2f}×")
    print(f"data pipeline alone: engine / seed-style = "
          f"{med['data only: engine, batch 64'] / med['data only: seed-style, batch 64']:.0f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
