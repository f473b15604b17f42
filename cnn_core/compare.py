"""Comparing runs: one summary row per run, and the assignment's BatchNorm questions answered from
measured numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .model import MnistCNN, count_parameters


def steps_to_accuracy(epochs: list[dict], target: float = 0.98) -> int | None:
    """Optimisation steps taken when validation accuracy first reached ``target`` (measured at the end
    of each epoch), or None if it never did."""
    for e in epochs:
        if e["val_accuracy"] >= target:
            return int(e["step"])
    return None


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
        "parameters": count_parameters(MnistCNN(bool(cfg["batchnorm"]))),
        "steps to 98% val": steps_to_accuracy(epochs),
        "epochs": len(epochs),
        "training digits": cfg["train_subset"] or 60000 - round(60000 * cfg["val_fraction"]),
    }


def comparison_table(runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([summary_row(r) for r in runs])


def bn_verdict(no_bn: dict, bn: dict) -> str:
    """One sentence: does BatchNorm improve test accuracy, and does it affect training time?

    Differences in test accuracy smaller than 0.1 point (10 of 10,000 digits) are called "about the
    same": that is within the run-to-run spread of this network.
    """
    a, b = summary_row(no_bn), summary_row(bn)
    if a["test accuracy (%)"] is None or b["test accuracy (%)"] is None:
        return "Both runs must finish before they can be compared."
    diff = b["test accuracy (%)"] - a["test accuracy (%)"]
    if abs(diff) < 0.1:
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
    return f"{acc}, {time}{speed}."


def misclassified(probs: np.ndarray, labels: np.ndarray, limit: int = 24) -> tuple[np.ndarray, list[str]]:
    """Indices of wrongly classified digits, most confident mistakes first, with their titles."""
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:limit]
    return wrong, [f"#{i}: true {labels[i]} → {pred[i]} ({100 * conf[i]:.0f}%)" for i in wrong]
