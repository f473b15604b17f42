"""Sweeps: one TrainConfig field over several values, everything else alike — seed 003's experiment (SGD, Momentum,
RMSProp and Adam trained the same way, then a table of test accuracy and training time), for any field below.

Runs of a sweep share the seed, so they start from the same weights and see the digits in the same order
(``training.training_batches``); BatchNorm vs no-BatchNorm is the two-value sweep of ``batchnorm``.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace

import pandas as pd

from .compare import SAME_ACCURACY, bn_verdict, summary_row
from .training import CONVS, OPTIMIZERS, SCHEDULES, TrainConfig, short_number

# field → (what the page calls it, the values compared when none are given)
SWEEPS = {
    "optimizer": ("optimizer", OPTIMIZERS),
    "lr": ("learning rate", (1e-4, 1e-3, 1e-2)),
    "batch_size": ("batch size", (32, 128, 512)),
    "batchnorm": ("BatchNorm", (False, True)),
    "augment": ("augmentation", (False, True)),
    "schedule": ("schedule", SCHEDULES),
    "conv": ("convolution", CONVS),
}
MAX_VALUES = 8  # a sweep longer than this is a night's work, not a lecture's
_TRUE, _FALSE = ("on", "true", "yes", "1", "bn"), ("off", "false", "no", "0", "nobn", "no-bn")


def parse_values(field: str, text: str) -> list:
    """The values of ``field`` written in ``text`` ("sgd, adam", "1e-3,1e-2", "off, on"), or its default values
    when ``text`` is blank. ValueError with a message a user can act on."""
    if field not in SWEEPS:
        raise ValueError(f"a sweep compares one of {', '.join(SWEEPS)}; got {field!r}")
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not words:
        return list(SWEEPS[field][1])
    kind = type(getattr(TrainConfig(), field))
    values = [_convert(field, kind, w) for w in words]
    repeated = sorted({w for w, v in zip(words, values, strict=True) if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{field}: {', '.join(repeated)} given twice")
    if not 2 <= len(values) <= MAX_VALUES:
        raise ValueError(f"a sweep needs 2 to {MAX_VALUES} values of {field}, got {len(values)}")
    for v in values:
        replace(TrainConfig(), **{field: v}).validate()
    return values


def _convert(field: str, kind: type, word: str):
    try:
        if kind is bool:
            if word not in _TRUE + _FALSE:
                raise ValueError
            return word in _TRUE
        return kind(float(word)) if kind is int and float(word).is_integer() else kind(word)
    except ValueError:
        what = {bool: "on or off", int: "an integer", float: "a number"}.get(kind, "one of its values")
        raise ValueError(f"{field}: {word!r} is not {what}") from None


def parse_sweep(spec: str) -> tuple[str, list]:
    """``"optimizer=sgd,momentum,rmsprop,adam"`` → ("optimizer", [...]); ``"lr"`` alone → its default values.
    Dashes in the field name are read as underscores (``batch-size=32,512``)."""
    field, _, text = spec.partition("=")
    field = field.strip().replace("-", "_")
    return field, parse_values(field, text)


def sweep_configs(base: TrainConfig, field: str, values: list) -> list[TrainConfig]:
    """One validated config per value: ``base`` with ``field`` set to it, every other field (seed included) alike."""
    return [replace(base, **{field: v}).validate() for v in values]


def differing_fields(configs: list[dict]) -> list[str]:
    """The TrainConfig fields whose values differ among ``configs`` (dicts, as in snapshots and run.json)."""
    names = [f.name for f in fields(TrainConfig)]
    defaults = asdict(TrainConfig())
    return [n for n in names if len({repr(c.get(n, defaults[n])) for c in configs}) > 1]


def sweep_field(runs: list[dict]) -> str | None:
    """The one sweepable field in which these runs (snapshots or saved runs) differ — a sweep, or the BatchNorm
    pair — else None (one run, unrelated runs, or runs that differ in more than one field)."""
    diff = differing_fields([r["config"] for r in runs])
    return diff[0] if len(diff) == 1 and diff[0] in SWEEPS else None


def value_label(field: str, value) -> str:
    """How a sweep's value reads in a table or sentence: 1e-3, BatchNorm / no BatchNorm, on / off, adam."""
    if field == "lr":
        return short_number(value)
    if field == "batchnorm":
        return "BatchNorm" if value else "no BatchNorm"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def sweep_table(runs: list[dict], field: str) -> pd.DataFrame:
    """One row per run (snapshots or saved runs) in the given order, led by the swept field's value."""
    label = SWEEPS[field][0]
    rows = [summary_row(r) | {label: value_label(field, r["config"][field])} for r in runs]  # "BatchNorm" is both
    columns = [label, "run", "outcome", "test accuracy (%)", "test loss", "seconds / epoch", "images/s (median)",
               "steps to 98% val", "peak MiB / step"]
    return pd.DataFrame(rows)[columns]


def sweep_verdict(runs: list[dict], field: str) -> str:
    """One sentence from the measured numbers: the runs that trained ranked by test accuracy (a lead under 0.1 point
    is called a tie), those that did not named with what went wrong, the range of seconds per epoch and of peak
    memory per step when they differ by more than 10% (speed: the median over 8-step windows, which a page redraw
    or another run's evaluation does not move — seconds per epoch on 2 shared cores varied 30% between runs that
    compute the same), and which run first reached 98% validation accuracy.
    The two-run BatchNorm sweep gets ``compare.bn_verdict``."""
    if field == "batchnorm" and len(runs) == 2:
        no_bn, bn = sorted(runs, key=lambda r: bool(r["config"]["batchnorm"]))
        return bn_verdict(no_bn, bn)
    rows = [summary_row(r) | {"value": value_label(field, r["config"][field]), "batch": r["config"]["batch_size"]}
            for r in runs]
    said = {"diverged": "diverged", "did not learn": "did not learn", "no numbers yet": "ended before its first validation"}
    failed = [f"{r['value']} {said[r['outcome']]}" for r in rows if r["outcome"] != "trained"]
    failed += [f"{r['value']} was stopped before its test" for r in rows
               if r["outcome"] == "trained" and r["test accuracy (%)"] is None]
    ranked = sorted((r for r in rows if r["outcome"] == "trained" and r["test accuracy (%)"] is not None),
                    key=lambda r: -r["test accuracy (%)"])
    if not ranked:
        return f"No verdict: {', '.join(failed) or 'no run has finished'}."
    parts = [_ranking(ranked)]
    if failed:
        parts.append(", ".join(failed))
    parts += _spread(rows, "images/s (median)", 0.10, "training speed", "{:,.0f} images/s")
    parts += _spread(rows, "peak MiB / step", 0.10, "peak memory per step", "{:.0f} MiB")
    reached = [r for r in rows if r["steps to 98% val"]]
    if reached:
        first = min(reached, key=lambda r: r["steps to 98% val"] * r["batch"])
        parts.append(f"first to 98% validation accuracy: {first['value']} (after {first['steps to 98% val']:,} steps, "
                     f"{first['steps to 98% val'] * first['batch']:,} digits)")
    return "; ".join(parts) + f". From one seed: differences under {SAME_ACCURACY} point are within the run-to-run spread."


def _ranking(ranked: list[dict]) -> str:
    order = ", ".join(f"{r['value']} {r['test accuracy (%)']:.2f}%" for r in ranked)
    if len(ranked) == 1:
        return f"Only {ranked[0]['value']} trained: test accuracy {ranked[0]['test accuracy (%)']:.2f}%"
    lead = ranked[0]["test accuracy (%)"] - ranked[1]["test accuracy (%)"]
    if round(lead, 2) < SAME_ACCURACY:  # in whole test digits (0.01 points): 99.10 − 99.00 is 0.0999…
        best = f"{ranked[0]['value']} and {ranked[1]['value']} are about the same at the top"
    else:
        best = f"{ranked[0]['value']} is best, {lead:.2f} points ahead of {ranked[1]['value']}"
    return f"Test accuracy, best first: {order} — {best}"


def _spread(rows: list[dict], column: str, threshold: float, what: str, fmt: str) -> list[str]:
    """'seconds per epoch from 2.1 s (sgd) to 2.6 s (adam)', or 'about the same …' — [] without numbers."""
    known = [r for r in rows if r[column] is not None and not pd.isna(r[column])]
    if len(known) < 2:
        return []
    lo, hi = min(known, key=lambda r: r[column]), max(known, key=lambda r: r[column])
    if (hi[column] - lo[column]) / lo[column] < threshold:
        return [f"about the same {what} ({fmt.format(lo[column])} to {fmt.format(hi[column])})"]
    return [f"{what} from {fmt.format(lo[column])} ({lo['value']}) to {fmt.format(hi[column])} ({hi['value']})"]

