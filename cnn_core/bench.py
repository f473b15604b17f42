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
from .memory import peak_bytes
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
    ap.add_argument("--conv", action="store_true", help="instead: unfold vs built-in convolution, time and memory")
    args = ap.parse_args(argv)
    if args.conv:
        return main_conv(args)
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


# ----- python -m cnn_core.bench --conv: the hand-written unfold convolution vs the built-in one ------------------
CONV_LAYERS = {"conv1 (1→32, 28×28)": (1, 28), "conv2 (32→32, 14×14)": (32, 14)}  # 3×3, stride 1, padding 1


def _conv_case(cin: int, size: int, batch: int, device, unfold: bool):
    """(forward, forward+backward) closures of one layer on a fixed random batch; conv2's input needs a gradient
    (it comes from conv1), conv1's does not (it is the image)."""
    from torch import nn

    from .unfold_conv import UnfoldConv2d

    torch.manual_seed(0)
    conv = (UnfoldConv2d if unfold else nn.Conv2d)(cin, 32, 3, stride=1, padding=1).to(device)
    x = torch.rand(batch, cin, size, size, device=device, requires_grad=cin > 1)
    dy = torch.randn(batch, 32, size, size, device=device)

    def forward():
        with torch.no_grad():
            conv(x)

    def forward_backward():
        conv.weight.grad = conv.bias.grad = x.grad = None
        conv(x).backward(dy)

    return forward, forward_backward


def _milliseconds(fn, device, reps: int) -> float:
    fn()  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return 1000 * (time.perf_counter() - t0) / reps


def _layouts(cols: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dy: torch.Tensor) -> dict:
    """The layouts tried for the unfold forward (with bias) and for dW, as closures over one layer's tensors."""
    n, o, length = dy.shape
    return {
        "forward: baddbmm (bias in the product; used)": lambda: torch.baddbmm(b.view(1, o, 1), w.expand(n, -1, -1), cols),
        "forward: matmul, then + bias": lambda: w @ cols + b.view(1, o, 1),
        "forward: einsum, then + bias": lambda: torch.einsum("ok,nkl->nol", w, cols) + b.view(1, o, 1),
        "forward: one addmm over N·L rows": lambda: torch.addmm(b, cols.transpose(1, 2).reshape(n * length, -1), w.t()),
        "dW: bmm, summed over the batch (used)": lambda: torch.bmm(dy, cols.transpose(1, 2)).sum(0),
        "dW: einsum": lambda: torch.einsum("nol,nkl->ok", dy, cols),
        "dW: one mm over N·L": lambda: dy.transpose(0, 1).reshape(o, -1) @ cols.transpose(1, 2).reshape(n * length, -1),
    }


def _layout_trials(device, reps: int) -> dict[str, dict[str, float]]:
    """Milliseconds of each of ``_layouts`` per layer (batch 128)."""
    import torch.nn.functional as F

    out = {}
    for layer, (cin, size) in CONV_LAYERS.items():
        cols = F.unfold(torch.rand(128, cin, size, size, device=device), 3, padding=1)
        w, b = torch.randn(32, cin * 9, device=device), torch.randn(32, device=device)
        dy = torch.randn(128, 32, size * size, device=device)
        out[layer] = {name: _milliseconds(fn, device, reps) for name, fn in _layouts(cols, w, b, dy).items()}
    return out


def main_conv(args) -> int:
    """Forward and forward+backward time and peak memory, unfold / built-in, for the assignment's two conv layers."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    batch, reps = 128, 10
    for device in devices:
        times: dict[tuple, list[float]] = {}
        peaks: dict[tuple, int] = {}
        cases = {(layer, impl): _conv_case(cin, size, batch, device, impl == "unfold")
                 for layer, (cin, size) in CONV_LAYERS.items() for impl in ("builtin", "unfold")}
        for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
            for (layer, impl), (fwd, fwd_bwd) in cases.items():
                times.setdefault((layer, impl, "fwd"), []).append(_milliseconds(fwd, device, reps))
                times.setdefault((layer, impl, "fwd+bwd"), []).append(_milliseconds(fwd_bwd, device, reps))
        for (layer, impl), (_, fwd_bwd) in cases.items():
            fwd_bwd()  # gradients exist already, as in training: the peak is the step's own
            peaks[layer, impl] = peak_bytes(fwd_bwd, device)
        med = {k: statistics.median(v) for k, v in times.items()}
        how = "torch.cuda.max_memory_allocated" if device.type == "cuda" else \
            "torch.profiler(profile_memory=True): peak of the CPU allocator's live bytes"
        print(f"\ndevice {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, "
              f"3×3 stride 1 padding 1; ms = median of {args.rounds} interleaved rounds of {reps} calls; "
              f"peak memory of forward+backward above its inputs ({how})")
        print("| layer | forward ms, built-in / unfold | ratio | forward+backward ms, built-in / unfold | ratio "
              "| peak MiB, built-in / unfold | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for layer in CONV_LAYERS:
            f_b, f_u = med[layer, "builtin", "fwd"], med[layer, "unfold", "fwd"]
            b_b, b_u = med[layer, "builtin", "fwd+bwd"], med[layer, "unfold", "fwd+bwd"]
            m_b, m_u = peaks[layer, "builtin"] / 2**20, peaks[layer, "unfold"] / 2**20
            print(f"| {layer} | {f_b:.2f} / {f_u:.2f} | {f_u / f_b:.2f}× | {b_b:.2f} / {b_u:.2f} | {b_u / b_b:.2f}× "
                  f"| {m_b:.1f} / {m_u:.1f} | {m_u / m_b:.2f}× |")
        print(f"\nlayouts tried for the unfold convolution on {device} (ms, batch {batch}, median of {args.rounds}):")
        trials = [_layout_trials(device, reps) for _ in range(args.rounds)]
        for layer in CONV_LAYERS:
            for name in trials[0][layer]:
                print(f"  {layer:<22} {name:<46} {statistics.median(t[layer][name] for t in trials):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
