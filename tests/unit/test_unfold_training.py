"""Training with the hand-written convolution (TrainConfig.conv = "unfold"): same numbers, same checkpoints."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnn_core.model import MnistCNN
from cnn_core.store import RunStore
from cnn_core.training import Run, TrainConfig
from cnn_core.unfold_conv import UnfoldConv2d

REPO = Path(__file__).resolve().parents[2]


def test_conv_is_a_validated_choice():
    assert TrainConfig().conv == "builtin"
    with pytest.raises(ValueError, match="conv.*'fft'"):
        TrainConfig(conv="fft").validate()


def test_run_json_files_written_before_the_conv_field_still_load():
    config = json.loads((REPO / "checkpoints" / "baseline" / "run.json").read_text())["config"]
    assert "conv" not in config  # shipped before the field existed
    assert TrainConfig.from_dict(config).conv == "builtin"
    model, _ = RunStore(REPO / "checkpoints").load_model("baseline")
    assert type(model.conv1) is nn.Conv2d and type(model.conv2) is nn.Conv2d


def test_the_unfold_model_has_the_same_parameters_and_initial_weights():
    builtin = MnistCNN(True, generator=torch.Generator().manual_seed(3))
    unfold = MnistCNN(True, generator=torch.Generator().manual_seed(3), conv="unfold")
    assert type(unfold.conv1) is UnfoldConv2d and type(unfold.conv2) is UnfoldConv2d
    a, b = builtin.state_dict(), unfold.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # same seed, same draws: exact
    x = torch.rand(2, 1, 28, 28)
    # unfold + matmul vs the conv kernel: float32 sums in another order in both convs (288 terms in conv2)
    torch.testing.assert_close(unfold.eval()(x), builtin.eval()(x), rtol=1e-5, atol=1e-5)


def test_same_seed_gives_the_builtin_loss_curve(mnist_1k, tiny_config):
    builtin = Run(tiny_config(epochs=1, val_fraction=0.02), mnist_1k).run()  # small validation split: a faster test
    unfold = Run(tiny_config(epochs=1, val_fraction=0.02, conv="unfold"), mnist_1k).run()
    assert unfold.status == builtin.status == "finished", unfold.error
    assert type(unfold.model.conv2) is UnfoldConv2d and type(builtin.model.conv2) is nn.Conv2d
    losses = [s["loss"] for s in unfold.steps]
    assert len(losses) == 8  # 512 digits, batch 64
    # float32 sums in another order in every conv, forward and backward, compounding over 8 steps: ≤ 1.4e-7 relative
    # measured (AMX machine); rel 1e-4 leaves room for another CPU's kernels
    assert losses == pytest.approx([s["loss"] for s in builtin.steps], rel=1e-4, abs=1e-5)
    assert unfold.results["accuracy"] == pytest.approx(builtin.results["accuracy"], abs=2e-3)  # ≤ 2 of the 1,000 digits


def test_the_conv_flag_round_trips_through_the_command_line(tmp_path, cli):
    out = cli("--runs-dir", str(tmp_path), "train", "--name", "hand", "--conv", "unfold", "--train-subset", "256",
              "--epochs", "1", "--val-fraction", "0.02", "--no-progress")
    assert out.returncode == 0, out.stderr
    info = json.loads((tmp_path / "hand" / "run.json").read_text())
    assert info["config"]["conv"] == "unfold" and info["command"].endswith(" --device auto --precision auto --val-points 10 --conv unfold")
    model, loaded = RunStore(tmp_path).load_model("hand")
    assert type(model.conv1) is UnfoldConv2d and loaded["config"]["conv"] == "unfold"
    bad = cli("train", "--name", "x", "--conv", "fft")
    assert bad.returncode == 2 and "invalid choice: 'fft'" in bad.stderr


def test_unfold_trains_under_bf16_autocast(mnist_1k, tiny_config):
    run = Run(tiny_config(conv="unfold", precision="bf16", epochs=1, val_points=1), mnist_1k).run()
    assert run.status == "finished", run.error
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in run.model.parameters())
    assert run.results["accuracy"] > 0.5
