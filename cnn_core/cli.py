"""``python -m cnn_core train | evaluate | robustness | views | report | runs`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

from .robust_attacks import ATTACKS
from .store import LECTURE_PAIR, ROBUSTNESS_FILE, RUNS_DIR_ENV, CheckpointError, RunStore, default_root, sanitize_name
from .sweep import SWEEPS, parse_sweep, sweep_configs, sweep_table, sweep_verdict, value_label
from .training import ADVERSARIAL, CONVS, DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES, Run, TrainConfig, evaluate

_CHOICES = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES, "adversarial": ADVERSARIAL,
            "precision": PRECISIONS, "conv": CONVS}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnn_core", description="CNN Lab: train and evaluate the MNIST CNN.")
    parser.add_argument("--runs-dir", default=str(default_root()),
                        help=f"folder of saved runs (default: ${RUNS_DIR_ENV} if set, else checkpoints/)")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model and save it as a run")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        default = getattr(defaults, f.name)
        kind = _bool if isinstance(default, bool) else type(default)
        train.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=default,
                           choices=_CHOICES.get(f.name), help=f"(default: {default})")
    train.add_argument("--name", required=True, help="run name (folder under --runs-dir); a sweep's runs are NAME-VALUE")
    train.add_argument("--sweep", metavar="FIELD=V1,V2,…",
                       help="train one run per value of one field, all else alike (same seed and data order), then "
                            f"compare them: {', '.join(SWEEPS)} (e.g. optimizer=sgd,momentum,rmsprop,adam; a field "
                            "alone takes its usual values)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run of that name")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    ev = sub.add_parser("evaluate", help="test-set accuracy and loss of a saved run")
    ev.add_argument("run", help="run name, or a path such as checkpoints/baseline")

    rob = sub.add_parser("robustness", help=f"accuracy under {', '.join(a.label for a in ATTACKS.values())} at ε = 0 … 0.3; "
                                            "saved as robustness.json in the run")
    rob.add_argument("run", help="run name, or a path such as checkpoints/baseline")
    rob.add_argument("--n", type=int, default=1000, help="first n test digits (default: 1000)")
    rob.add_argument("--steps", "--pgd-steps", dest="steps", type=int, default=20,
                     help="steps of the iterative attacks (default: 20, PGD-20)")
    rob.add_argument("--attacks", nargs="+", choices=list(ATTACKS), default=list(ATTACKS),
                     help="which attacks (default: all of them)")

    views = sub.add_parser("views", help="the Robustness lab's defences and universal perturbation at every ε of its "
                                         "slider, stored in the run so that the page shows them at once (~20 min)")
    views.add_argument("run", help="run name, or a path such as checkpoints/baseline")

    rep = sub.add_parser("report", help="the assignment report: one self-contained HTML file (figures embedded, opens "
                                        "offline) answering every question in order")
    rep.add_argument("--runs", nargs=2, default=list(LECTURE_PAIR), metavar=("NO_BN", "BN"),
                     help="the runs without and with BatchNorm (default: baseline batchnorm)")
    rep.add_argument("--out", default="report.html", help="where to write it (default: report.html)")

    sub.add_parser("runs", help="list saved runs")
    return parser


def _store_and_name(runs_dir: str, run: str) -> tuple[RunStore, str]:
    p = Path(run)
    if len(p.parts) > 1:  # a path: its parent is the store
        return RunStore(p.parent), p.name
    return RunStore(runs_dir), run


def _load(args):
    """(store, name, model) of the run named by ``args.run``, or None after printing why it can't be loaded."""
    store, name = _store_and_name(args.runs_dir, args.run)
    try:
        return store, name, store.load_model(name)[0]
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_train(args) -> int:
    from .data import load_mnist

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    try:
        cfg.validate()
        if args.sweep:
            field, values = parse_sweep(args.sweep)
            configs = sweep_configs(cfg, field, values)
            names = [sanitize_name(f"{args.name}-{value_label(field, v)}") for v in values]
        else:
            configs, names = [cfg], [sanitize_name(args.name)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = RunStore(args.runs_dir)
    taken = [n for n in names if store.exists(n)]
    if taken and not args.overwrite:
        print(f"error: run(s) {', '.join(taken)} exist in {store.root}; pass --overwrite to replace them", file=sys.stderr)
        return 2
    data = load_mnist()
    runs = []
    for config, name in zip(configs, names, strict=True):
        run = _train(Run(config, data, name=name), not args.no_progress)
        if run.status != "finished":
            print(f"error: run {name} {run.status}: {run.error or ''}", file=sys.stderr)
            return 1
        path = store.save(run, name, overwrite=args.overwrite)
        r = run.results
        print(f"test accuracy {100 * r['accuracy']:.2f}%  loss {r['loss']:.4f}  top-5 {100 * r['top5_accuracy']:.2f}%  "
              f"(best epoch {run.best['epoch']}, val {100 * run.best['val_accuracy']:.2f}%)  saved to {path}")
        runs.append(run.snapshot())
    if args.sweep:
        print(sweep_table(runs, field).to_string(index=False, na_rep="—",
                                                 float_format=lambda v: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"))
        print(sweep_verdict(runs, field))
    return 0


def _train(run: Run, progress: bool) -> Run:
    """Train ``run`` in this thread, with a progress bar and a line per epoch."""
    from tqdm import tqdm

    bar = tqdm(unit="step", dynamic_ncols=True, desc=run.name) if progress else None
    say = bar.write if bar is not None else print
    val_acc = {}

    def on_event(event: str, info: dict) -> None:
        if event == "step" and bar is not None:
            bar.total = run.progress["total_steps"]
            bar.update(1)
            bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.4f}", acc=f"{info['accuracy']:.3f}", **val_acc)
        elif event == "epoch":
            val_acc["val_acc"] = f"{info['val_accuracy']:.4f}"
            say(f"epoch {info['epoch']}: train loss {info['train_loss']:.4f} acc {info['train_accuracy']:.4f} | "
                f"val loss {info['val_loss']:.4f} acc {info['val_accuracy']:.4f} | "
                f"{info['seconds']:.1f} s, {info['images_per_s']:.0f} img/s")

    run.callback = on_event
    run.run()
    if bar is not None:
        bar.close()
    return run


def cmd_evaluate(args) -> int:
    from .data import load_mnist

    loaded = _load(args)
    if loaded is None:
        return 1
    _, name, model = loaded
    data = load_mnist()
    r = evaluate(model, data.test_images, data.test_labels)
    print(f"{name}: test accuracy {100 * r['accuracy']:.2f}% ({round(r['accuracy'] * r['n'])}/{r['n']})  "
          f"loss {r['loss']:.4f}  top-5 {100 * r['top5_accuracy']:.2f}%")
    return 0


def cmd_robustness(args) -> int:
    from .data import load_mnist, to_float
    from .robust import robustness_curves
    from .views import stored_curves

    loaded = _load(args)
    if loaded is None:
        return 1
    store, name, model = loaded
    if not 1 <= args.n <= 10000 or not 1 <= args.steps <= 1000:
        print("error: --n must be in [1, 10000] and --steps in [1, 1000]", file=sys.stderr)
        return 2
    data = load_mnist()
    x, y = to_float(data.test_images[: args.n]), data.test_labels[: args.n]
    curves = robustness_curves(model.requires_grad_(False), x, y, steps=args.steps, attacks=args.attacks)
    curves = curves.keeping(stored_curves(store, name))
    path = store.write_extra(name, ROBUSTNESS_FILE, curves.to_json())
    labels = {m: ATTACKS[m].label if m in ATTACKS else m for m in curves.accuracy}
    width = max(map(len, labels.values())) + 1
    print(f"{name}: accuracy (%) on the first {args.n} test digits")
    print("ε".ljust(width) + "  ".join(f"{e:>5.2f}" for e in curves.epsilons))
    for method, acc in curves.accuracy.items():
        print(labels[method].ljust(width) + "  ".join(f"{100 * a:>5.1f}" for a in acc))
    print(f"saved to {path}")
    return 0


def cmd_views(args) -> int:
    from .data import load_mnist
    from .model import for_inference
    from .views import store_views

    loaded = _load(args)
    if loaded is None:
        return 1
    store, name, model = loaded
    t0 = time.perf_counter()
    # The pages' own inference model (channels_last), so that a stored view is what the page would compute.
    store_views(store, name, for_inference(model), load_mnist(),
                progress=lambda what: print(f"{time.perf_counter() - t0:7.0f} s  {what}", flush=True))
    print(f"{name}: views stored in {store.path(name)}")
    return 0


def cmd_report(args) -> int:
    from .data import load_mnist
    from .report import build_report

    store = RunStore(args.runs_dir)
    missing = [n for n in args.runs if not store.exists(n)]
    if missing:
        print(f"error: no saved run {', '.join(missing)} in {store.root}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    page, figures = build_report(store, load_mnist(), tuple(args.runs),
                                 progress=lambda what: print(f"{time.perf_counter() - t0:5.1f} s  {what}", flush=True))
    Path(args.out).write_text(page, encoding="utf-8")
    print(f"{args.out}: {len(page) / 1e6:.1f} MB, {figures} figures, {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_runs(args) -> int:
    runs = RunStore(args.runs_dir).list_runs()
    if not runs:
        print(f"no saved runs in {args.runs_dir}")
    for info in runs:
        if "error" in info:
            print(f"{info['name']:<20} DAMAGED: {info['error']}")
            continue
        c, r = info["config"], info["results"]
        result = f"test acc {100 * r['accuracy']:.2f}%" if r else f"stopped at step {info.get('stopped_at_step')}"
        print(f"{info['name']:<20} {'BN   ' if c['batchnorm'] else 'no-BN'}  {c['optimizer']:<8} lr {c['lr']:<8g} "
              f"{c['epochs']:>3} ep  {result}  {'(shipped)' if info['shipped'] else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "robustness": cmd_robustness, "views": cmd_views, "report": cmd_report,
                "runs": cmd_runs}
    return commands[args.command](args)
