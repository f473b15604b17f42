"""Comparing runs: one summary row per run, and the assignment's BatchNorm questions answered from
measured numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .data import training_digits
from .model import MnistCNN, count_parameters

CHANCE = 0.1  # accuracy of guessing among 10 classes
GUESS_LOSS = math.log(10)  # cross-entropy of predicting 1/10 for every class: where a fresh network starts
# A run diverged when its training loss ends this far above GUESS_LOSS: training made it worse than where it started.
# The margin keeps a slow learner (SGD at lr 1e-3 still at 2.305 after a few steps) from being called diverged.
DIVERGED_MARGIN = 0.1
SAME_ACCURACY = 0.1  # test-accuracy points within which two runs of one seed are "about the same" (10 of 10,000 digits)


def validation_points(run: dict) -> list[dict]:
    """A run's validation records (step, val_loss/accuracy, training loss/accuracy since the point before): the
    ``vals`` of runs trained now, else one per epoch end for runs saved before validation curves existed."""
    return run.get("vals") or [{k: e[k] for k in ("step", "val_loss", "val_accuracy", "train_loss", "train_accuracy")}
                               for e in run.get("epochs") or []]


def steps_to_accuracy(points: list[dict], target: float = 0.98) -> int | None:
    """Optimisation steps taken when validation accuracy first reached ``target`` (at the run's validation
    points), or None if it never did."""
    for p in points:
        if p["val_accuracy"] >= target:
            return int(p["step"])
    return None


def outcome(run: dict) -> str:
    """Did the run train? "diverged": a training loss became infinite or NaN, or the last training loss is more than
    DIVERGED_MARGIN above ln 10 — worse than guessing 1/10 for every class; "did not learn": accuracy (test, else last validation) under
    twice chance (20%); "trained" otherwise; "no numbers yet" before its first validation."""
    points = validation_points(run)
    losses = [s["loss"] for s in run.get("steps") or []]
    if not points:
        return "no numbers yet"
    if not all(math.isfinite(v) for v in losses) or not math.isfinite(points[-1]["train_loss"]) \
            or points[-1]["train_loss"] > GUESS_LOSS + DIVERGED_MARGIN:
        return "diverged"
    accuracy = (run.get("results") or {}).get("accuracy", points[-1]["val_accuracy"])
    return "trained" if accuracy >= 2 * CHANCE else "did not learn"


def summary_row(run: dict) -> dict:
    """A run's headline numbers, from a live snapshot or a saved run.json (same keys)."""
    cfg, res, epochs = run["config"], run.get("results") or {}, run.get("epochs") or []
    seconds = [e["seconds"] for e in epochs]
    return {
        "run": run["name"],
        "BatchNorm": bool(cfg["batchnorm"]),
        "test accuracy (%)": 100 * res["accuracy"] if res else None,
        "test loss": res.get("loss"),
        "seconds / epoch": sum(seconds) / len(seconds) if seconds else None,
        "images/s (median)": _median([e.get("images_per_s_median") for e in epochs]),
        "parameters": count_parameters(MnistCNN(bool(cfg["batchnorm"]))),
        "steps to 98% val": steps_to_accuracy(validation_points(run)),
        "peak MiB / step": run.get("peak_step_mib", (run.get("timings") or {}).get("peak_step_mib")),
        "outcome": outcome(run),
        "epochs": len(epochs),
        "training digits": training_digits(cfg["train_subset"], cfg["val_fraction"]),
    }


def _median(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def comparison_table(runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([summary_row(r) for r in runs])


def bn_verdict(no_bn: dict, bn: dict) -> str:
    """One sentence: does BatchNorm improve test accuracy, and does it affect training time?

    Only runs that trained are compared (see ``outcome``): a diverged run is called diverged. Differences in test
    accuracy smaller than 0.1 point (10 of 10,000 digits) are called "about the same": that is within the
    run-to-run spread of this network. The sentence says it rests on one seed.
    """
    a, b = summary_row(no_bn), summary_row(bn)
    said = {"diverged": "diverged", "did not learn": "did not learn", "no numbers yet": "ended before its first validation"}
    failed = [f"the {label} run {said[row['outcome']]}" + (f" ({_numbers(run)})" if row["outcome"] != "no numbers yet" else "")
              for label, row, run in (("BatchNorm", b, bn), ("no-BatchNorm", a, no_bn)) if row["outcome"] != "trained"]
    if failed:
        return (f"No verdict: {' and '.join(failed)}. Compare runs that trained — for a diverged run, "
                "try a smaller learning rate.")
    if a["test accuracy (%)"] is None or b["test accuracy (%)"] is None:
        return "Both runs must finish before they can be compared."
    diff = b["test accuracy (%)"] - a["test accuracy (%)"]
    if round(abs(diff), 2) < SAME_ACCURACY:  # rounded to the 0.01 points one test digit is: 99.10 − 99.00 = 0.0999…
        acc = f"BatchNorm left test accuracy about the same ({b['test accuracy (%)']:.2f}% vs {a['test accuracy (%)']:.2f}%)"
    else:
        verb = "improved" if diff > 0 else "lowered"
        acc = (f"BatchNorm {verb} test accuracy by {abs(diff):.2f} points "
               f"({b['test accuracy (%)']:.2f}% vs {a['test accuracy (%)']:.2f}% without)")
    ta, tb = a["seconds / epoch"], b["seconds / epoch"]
    change = (tb - ta) / ta
    if abs(change) < 0.05:
        time = f"and cost about the same time per epoch ({tb:.1f} s vs {ta:.1f} s)"
    else:
        time = f"and took {abs(change) * 100:.0f}% {'longer' if change > 0 else 'less time'} per epoch ({tb:.1f} s vs {ta:.1f} s)"
    sa, sb = a["steps to 98% val"], b["steps to 98% val"]
    if sa and sb:
        speed = f"; it reached 98% validation accuracy after {sb:,} steps vs {sa:,}"
    elif sb and not sa:
        speed = f"; only the BatchNorm run reached 98% validation accuracy (after {sb:,} steps)"
    elif sa and not sb:
        speed = f"; only the run without BatchNorm reached 98% validation accuracy (after {sa:,} steps)"
    else:
        speed = ""
    return f"{acc}, {time}{speed}. From one seed: repeat with other seeds before drawing a conclusion."


def _numbers(run: dict) -> str:
    """'final training loss 3.1e+10, test accuracy 9.80%' for a run's verdict (a run with validation points)."""
    last, res = validation_points(run)[-1], run.get("results")
    accuracy = f"test accuracy {100 * res['accuracy']:.2f}%" if res else f"validation accuracy {100 * last['val_accuracy']:.2f}%"
    return f"final training loss {last['train_loss']:.3g}, {accuracy}"


def across_seeds(runs: list[dict]) -> pd.DataFrame:
    """One row per arm (without / with BatchNorm): the seeds of its runs that trained, and the mean ± sd (sample
    standard deviation, n − 1) of test accuracy and of seconds per epoch over them."""
    rows = []
    for bn in (False, True):
        arm = [summary_row(r) | {"seed": r["config"]["seed"]} for r in runs
               if bool(r["config"]["batchnorm"]) == bn and r.get("results") and outcome(r) == "trained"]
        if not arm:
            continue
        acc = np.array([a["test accuracy (%)"] for a in arm])
        sec = np.array([a["seconds / epoch"] for a in arm])
        rows.append({"BatchNorm": bn, "seeds": ", ".join(str(a["seed"]) for a in sorted(arm, key=lambda a: a["seed"])),
                     "test accuracy mean (%)": acc.mean(), "test accuracy sd": acc.std(ddof=1) if len(arm) > 1 else np.nan,
                     "seconds / epoch mean": sec.mean(), "seconds / epoch sd": sec.std(ddof=1) if len(arm) > 1 else np.nan})
    return pd.DataFrame(rows)


def seeds_verdict(runs: list[dict]) -> str:
    """The BatchNorm question answered over several seeds: the difference of mean test accuracies, called real only
    when it is larger than the larger of the two arms' standard deviations."""
    table = across_seeds(runs)
    if len(table) < 2 or table["test accuracy sd"].isna().any():
        return "Both arms need at least two seeds that trained."
    a, b = table.iloc[0], table.iloc[1]  # without, with
    diff = b["test accuracy mean (%)"] - a["test accuracy mean (%)"]
    spread = max(a["test accuracy sd"], b["test accuracy sd"])
    seeds = len(a["seeds"].split(", "))
    verb = "left" if round(diff, 2) == 0 else "improved" if diff > 0 else "lowered"
    accuracy = (f"Over {seeds} seeds, BatchNorm {verb} mean test accuracy " +
                ("unchanged " if verb == "left" else f"by {abs(diff):.2f} points ") +
                f"({b['test accuracy mean (%)']:.2f} ± {b['test accuracy sd']:.2f}% vs {a['test accuracy mean (%)']:.2f} ± {a['test accuracy sd']:.2f}%)")
    judged = ("larger than the spread between seeds" if abs(diff) > spread
              else f"within the spread between seeds (sd up to {spread:.2f}): no clear effect")
    time = (f"seconds per epoch {b['seconds / epoch mean']:.1f} ± {b['seconds / epoch sd']:.1f} vs "
            f"{a['seconds / epoch mean']:.1f} ± {a['seconds / epoch sd']:.1f}")
    return f"{accuracy} — {judged}; {time}."


def misclassified(probs: np.ndarray, labels: np.ndarray, limit: int = 24) -> tuple[np.ndarray, list[str]]:
    """Indices of wrongly classified digits, most confident mistakes first, with their titles (on two lines: at 16 px
    one line was wider than a digit's cell, six across at 1280 px)."""
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:limit]
    return wrong, [f"#{i}<br>true {labels[i]} → {pred[i]} ({100 * conf[i]:.0f}%)" for i in wrong]
