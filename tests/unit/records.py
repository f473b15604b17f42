"""Run records as the pages and their sentences read them, small enough to write by hand (shared by the
comparison, sweep and verdict tests)."""

from dataclasses import asdict

from cnn_core.training import TrainConfig


def snap(name, bn, acc, secs, val_accs, steps_per_epoch=100):
    """A finished run's snapshot: its config, test results and one epoch record per validation accuracy."""
    return {"name": name, "config": {"batchnorm": bn, "train_subset": 0, "val_fraction": 0.1},
            "results": {"accuracy": acc, "loss": 0.03},
            "epochs": [{"epoch": i + 1, "step": (i + 1) * steps_per_epoch, "val_accuracy": v, "seconds": secs,
                        "val_loss": 1 - v, "train_loss": 0.5 - v / 2, "train_accuracy": v}
                       for i, v in enumerate(val_accs)]}


def diverged(name, bn, final_loss, acc):
    record = snap(name, bn, acc, 10.0, [acc])
    record["epochs"][0]["train_loss"] = final_loss
    return record


def seeded(bn, seed, acc, secs):
    record = snap(f"{'bn' if bn else 'nobn'}-s{seed}", bn, acc, secs, [acc])
    record["config"]["seed"] = seed
    return record


def sweep_run(value, acc, speed, mib=27.0, final_loss=0.1, steps_to_98=None, field="optimizer", batch=128):
    """One run of a sweep over ``field`` at ``value`` (acc None: stopped before its test)."""
    vals = [{"step": 100, "val_loss": 0.1, "val_accuracy": 0.99 if steps_to_98 else 0.9, "train_loss": final_loss,
             "train_accuracy": 0.9}]
    if steps_to_98:
        vals[0]["step"] = steps_to_98
    config = asdict(TrainConfig(batch_size=batch)) | {field: value}
    return {"name": f"r-{value}", "config": config, "results": None if acc is None else {"accuracy": acc, "loss": 0.05},
            "vals": vals, "epochs": [{"seconds": 54000 / speed, "images_per_s_median": speed}], "steps": [],
            "peak_step_mib": mib}
