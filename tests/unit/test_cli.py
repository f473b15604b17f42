import json
import re
from pathlib import Path

import pytest

from cnn_core.robust import RobustnessCurves
from cnn_core.robust_attacks import ATTACKS
from cnn_core.views import stored_curves

REPO = Path(__file__).resolve().parents[2]


def test_train_runs_and_evaluate_on_a_tiny_subset(tmp_path, cli):
    out = cli("--runs-dir", str(tmp_path), "train", "--name", "tiny", "--train-subset", "256", "--epochs", "1",
              "--batchnorm", "true", "--optimizer", "sgd", "--lr", "0.05", "--schedule", "cosine")
    assert out.returncode == 0, out.stderr
    assert re.search(r"epoch 1: train loss \d\.\d{4} acc", out.stdout)
    trained = float(re.search(r"test accuracy (\d+\.\d+)%", out.stdout).group(1))
    command = json.loads((tmp_path / "tiny" / "run.json").read_text())["command"]
    assert command.startswith("python -m cnn_core train --name tiny --batchnorm true --optimizer sgd --lr 0.05 ")
    assert "--train-subset 256 --augment false --adversarial none --adv-epsilon 0.1 --adv-steps 5 --adv-mix 0.5 " \
           "--device auto" in command
    listing = cli("--runs-dir", str(tmp_path), "runs")
    assert re.search(r"^tiny\s+BN\s+sgd\s+lr 0.05\s+1 ep", listing.stdout, re.M)
    ev = cli("evaluate", str(tmp_path / "tiny"))
    assert ev.returncode == 0 and f"test accuracy {trained:.2f}%" in ev.stdout

    again = cli("--runs-dir", str(tmp_path), "train", "--name", "tiny", "--train-subset", "256")
    assert again.returncode == 2 and "pass --overwrite" in again.stderr


def test_the_runs_folder_comes_from_the_environment_unless_the_flag_says_otherwise(tmp_path, cli):
    env_dir, flag_dir = tmp_path / "from-env", tmp_path / "from-flag"
    small = ("--train-subset", "128", "--epochs", "1", "--val-points", "1", "--no-progress")
    out = cli("train", "--name", "e", *small, env={"CNN_LAB_RUNS_DIR": str(env_dir)})
    assert out.returncode == 0, out.stderr
    assert (env_dir / "e" / "run.json").is_file()
    assert re.search(r"^e\s+no-BN", cli("runs", env={"CNN_LAB_RUNS_DIR": str(env_dir)}).stdout, re.M)
    out = cli("--runs-dir", str(flag_dir), "train", "--name", "f", *small, env={"CNN_LAB_RUNS_DIR": str(env_dir)})
    assert out.returncode == 0 and (flag_dir / "f" / "run.json").is_file() and not (env_dir / "f").exists()


def test_a_sweep_trains_one_run_per_value_and_compares_them(tmp_path, cli):
    small = ("--train-subset", "256", "--epochs", "1", "--val-points", "1", "--no-progress")
    out = cli("--runs-dir", str(tmp_path), "train", "--name", "s", "--sweep", "lr=1e-3,1e-2", *small)
    assert out.returncode == 0, out.stderr
    configs = [json.loads((tmp_path / n / "run.json").read_text())["config"] for n in ("s-1e-3", "s-1e-2")]
    assert [c.pop("lr") for c in configs] == [1e-3, 1e-2] and configs[0] == configs[1]
    assert re.search(r"^learning rate\s+run\s+outcome\s+test accuracy", out.stdout, re.M)
    assert re.search(r"^Test accuracy, best first: 1e-\d \d+\.\d\d%, 1e-\d|^Only 1e-\d trained|^No verdict", out.stdout, re.M)
    again = cli("--runs-dir", str(tmp_path), "train", "--name", "s", "--sweep", "lr=1e-3,1e-4", *small)
    assert again.returncode == 2 and "run(s) s-1e-3 exist" in again.stderr and not (tmp_path / "s-1e-4").exists()
    bad = cli("--runs-dir", str(tmp_path), "train", "--name", "t", "--sweep", "lr=1e-3,0.001")
    assert bad.returncode == 2 and "lr: 0.001, 1e-3 given twice" in bad.stderr


def test_bad_flags_give_clear_messages(tmp_path, cli):
    out = cli("--runs-dir", str(tmp_path), "train", "--name", "x", "--lr", "-1")
    assert out.returncode == 2 and "lr must be in (0, 10], got -1.0" in out.stderr
    out = cli("--runs-dir", str(tmp_path), "train", "--name", "x", "--optimizer", "lbfgs")
    assert out.returncode == 2 and "invalid choice: 'lbfgs'" in out.stderr
    out = cli("--runs-dir", str(tmp_path), "evaluate", "missing-run")
    assert out.returncode == 1 and "no saved run named 'missing-run'" in out.stderr


def test_adversarial_training_and_robustness_from_the_command_line(tmp_path, cli):
    out = cli("--runs-dir", str(tmp_path), "train", "--name", "adv", "--train-subset", "256", "--epochs", "1",
              "--adversarial", "pgd", "--adv-epsilon", "0.2", "--adv-steps", "2", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "--adversarial pgd --adv-epsilon 0.2 --adv-steps 2" in json.loads((tmp_path / "adv" / "run.json").read_text())["command"]
    rob = cli("--runs-dir", str(tmp_path), "robustness", "adv", "--n", "40", "--pgd-steps", "2")
    assert rob.returncode == 0, rob.stderr
    assert all(re.search(rf"^{a.label}(\s+\d+\.\d){{7}}$", rob.stdout, re.M) for a in ATTACKS.values())
    curves = RobustnessCurves.from_json(json.loads((tmp_path / "adv" / "robustness.json").read_text()))
    assert curves.n == 40 and curves.steps == 2 and curves.epsilons == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    # at ε = 0 every attack returns the digits unchanged: the same clean pass, same kernels, same order: exact
    assert len({a[0] for a in curves.accuracy.values()}) == 1 and list(curves.accuracy) == list(ATTACKS)
    assert curves.accuracy["pgd"][-1] <= curves.accuracy["pgd"][0]
    # one attack more, later: added to the stored curves of the same digits and steps, the others kept
    again = cli("--runs-dir", str(tmp_path), "robustness", "adv", "--n", "40", "--steps", "2", "--attacks", "fgsm")
    assert again.returncode == 0, again.stderr
    assert RobustnessCurves.from_json(json.loads((tmp_path / "adv" / "robustness.json").read_text())) == curves
    bad = cli("--runs-dir", str(tmp_path), "robustness", "adv", "--n", "0")
    assert bad.returncode == 2 and "--n must be in [1, 10000]" in bad.stderr


def test_python_dash_m_cnn_core_runs_as_a_program(cli):
    """The other tests call the command line in this process; this one runs it as users do."""
    out = cli("runs", subprocess_=True)
    assert out.returncode == 0 and re.search(r"^baseline\s+no-BN.*\(shipped\)$", out.stdout, re.M), out.stderr


@pytest.mark.parametrize("run, target", [("baseline", 99.3), ("batchnorm", 99.45)])
def test_shipped_checkpoints_reach_their_targets(run, target, cli):
    out = cli("evaluate", f"checkpoints/{run}")
    assert out.returncode == 0, out.stderr
    accuracy = float(re.search(r"test accuracy (\d+\.\d+)% \((\d+)/10000\)", out.stdout).group(1))
    assert accuracy >= target


def test_shipped_adversarially_trained_checkpoint_is_robust(mnist):
    """checkpoints/adv-trained (PGD ε = 0.2 training) keeps most of its accuracy under PGD where the baseline has
    almost none; its stored curve is what the Robustness lab shows."""
    from cnn_core import robust as R
    from cnn_core.data import to_float
    from cnn_core.store import RunStore

    store = RunStore(REPO / "checkpoints")
    model, info = store.load_model("adv-trained")
    assert info["config"]["adversarial"] == "pgd" and info["results"]["accuracy"] >= 0.985
    x, y = to_float(mnist.test_images[:200]), mnist.test_labels[:200]
    assert R.robust_accuracy(model.requires_grad_(False), x, y, "pgd", 0.2) >= 0.75  # PGD-20
    curves = {name: stored_curves(store, name) for name in ("baseline", "batchnorm", "adv-trained")}
    for c in curves.values():  # every registered attack: after adding one, `python -m cnn_core robustness RUN --attacks NAME`
        assert c.n == 1000 and c.steps == 20 and list(c.accuracy) == list(ATTACKS) and len(c.accuracy["pgd"]) == 7
    assert curves["adv-trained"].at("pgd")[0.2] > 0.7 > curves["baseline"].at("pgd")[0.2]
