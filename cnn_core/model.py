"""The assignment's CNN, with optional BatchNorm, and the arithmetic the assignment asks about.

input → conv1 (32, 3×3, s1, p1) → ReLU → maxpool 2×2/2 → conv2 (32, 3×3, s1, p1) → ReLU → maxpool
→ flatten (1568) → fc1 (500) → ReLU → fc2 (10) → logits. With ``batchnorm=True``: bn1/bn2 after the
convs and bn3 after fc1, each before its ReLU. Inputs are pixel intensities in [0, 1]; normalizing
with the MNIST mean/std is the model's own first step.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .unfold_conv import UnfoldConv2d

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def conv_output_size(w: int, k: int, p: int, s: int) -> int:
    """Spatial output size of a convolution or pooling window: (W − K + 2P) / S + 1."""
    return (w - k + 2 * p) // s + 1


class MnistCNN(nn.Module):
    def __init__(self, batchnorm: bool = False, generator: torch.Generator | None = None, conv: str = "builtin"):
        """``generator`` seeds the initial weights: they come from it alone, whatever other threads draw meanwhile.
        (The layers' default initialisation still draws from the global RNG before it is overwritten, so building a
        model advances a caller's seeded stream.) ``conv``: "builtin" (nn.Conv2d) or "unfold" (UnfoldConv2d, the same
        parameters computed as W·unfold(X) + b)."""
        super().__init__()
        self.batchnorm = batchnorm
        # Constants, not learned: kept out of the state_dict so checkpoints hold weights only.
        self.register_buffer("mean", torch.tensor(MNIST_MEAN), persistent=False)
        self.register_buffer("std", torch.tensor(MNIST_STD), persistent=False)
        conv2d = {"builtin": nn.Conv2d, "unfold": UnfoldConv2d}[conv]
        self.conv1 = conv2d(1, 32, kernel_size=3, stride=1, padding=1)
        self.conv2 = conv2d(32, 32, kernel_size=3, stride=1, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * 7 * 7, 500)
        self.fc2 = nn.Linear(500, 10)
        if batchnorm:
            self.bn1 = nn.BatchNorm2d(32)
            self.bn2 = nn.BatchNorm2d(32)
            self.bn3 = nn.BatchNorm1d(500)
        if generator is not None:
            init_weights(self, generator)

    def _bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)(x) if self.batchnorm else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×1×28×28 intensities in [0, 1] → N×10 logits."""
        return self.stages(x)["logits"]

    def stages(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate result by name. "convK" is the input of ReLU K (after BatchNorm when the
        model has it), "reluK" its output, "poolK" the max-pooled maps; "fc1_pre" is the input of fc1's ReLU."""
        out = {}
        h = (x - self.mean) / self.std
        for k in (1, 2):
            out[f"conv{k}"] = self._bn(f"bn{k}", getattr(self, f"conv{k}")(h))
            out[f"relu{k}"] = F.relu(out[f"conv{k}"])
            out[f"pool{k}"] = h = self.pool(out[f"relu{k}"])
        out["fc1_pre"] = self._bn("bn3", self.fc1(h.flatten(1)))
        out["fc1"] = F.relu(out["fc1_pre"])
        out["logits"] = self.fc2(out["fc1"])
        return out


def init_weights(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Conv2d/Linear initialisation, drawn from ``generator``.

    weight ~ kaiming_uniform(a=√5) = U(−1/√fan_in, 1/√fan_in), bias ~ U(−1/√fan_in, 1/√fan_in).
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=5**0.5, generator=generator)
                bound = 1 / m.weight[0].numel() ** 0.5
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def count_parameters(model: nn.Module, prefix: tuple[str, ...] = ()) -> int:
    """Learnable parameters (frozen ones included), optionally only names starting with ``prefix``."""
    return sum(p.numel() for n, p in model.named_parameters() if not prefix or n.startswith(prefix))


def parameter_split(model: nn.Module) -> dict[str, int]:
    """Total / convolutional / fully connected / BatchNorm parameter counts."""
    return {
        "total": count_parameters(model),
        "conv": count_parameters(model, ("conv",)),
        "fc": count_parameters(model, ("fc",)),
        "batchnorm": count_parameters(model, ("bn",)),
    }


def _kernel_info(m: nn.Module) -> tuple[int, int, int] | None:
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
        k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
        return k, s, p
    return None


def layer_table(model: MnistCNN) -> pd.DataFrame:
    """One row per layer: shapes (measured by a real forward), window, output-size arithmetic,
    parameters, and neurons under both conventions.

    "neurons" counts output units of conv and FC layers only (31,870 for this network);
    "units incl. input & pooling" also counts the 784 input pixels and the pooling outputs (40,494).
    """
    order = ["conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2", "flatten", "fc1", "bn3", "relu3", "fc2"]
    shapes: dict[str, tuple[tuple, tuple]] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(1, 1, 28, 28, device=model.mean.device)
        shapes["input"] = ((), tuple(x.shape[1:]))
        h = (x - model.mean) / model.std
        for name in order:
            if name.startswith("bn") and not model.batchnorm:
                continue
            before = tuple(h.shape[1:])
            if name.startswith("relu"):
                h = F.relu(h)
            elif name.startswith("pool"):
                h = model.pool(h)
            elif name == "flatten":
                h = h.flatten(1)
            else:
                h = getattr(model, name)(h)
            shapes[name] = (before, tuple(h.shape[1:]))
    model.train(was_training)

    rows = []
    for name, (shape_in, shape_out) in shapes.items():
        module = model.pool if name.startswith("pool") else getattr(model, name, None)
        kind = {"input": "input", "flatten": "flatten"}.get(name) or (
            "ReLU" if name.startswith("relu") else type(module).__name__
        )
        window = _kernel_info(module) if module is not None else None
        arithmetic = ""
        if window:
            k, s, p = window
            w = shape_in[-1]
            arithmetic = f"({w} − {k} + 2·{p}) / {s} + 1 = {conv_output_size(w, k, p, s)}"
        units = int(torch.tensor(shape_out).prod())
        is_neuron_layer = name.startswith(("conv", "fc"))
        rows.append(
            {
                "layer": name,
                "type": kind,
                "input shape": "×".join(map(str, shape_in)) if shape_in else "",
                "output shape": "×".join(map(str, shape_out)),
                "kernel / stride / padding": f"{window[0]}×{window[0]} / {window[1]} / {window[2]}" if window else "",
                "output-size arithmetic": arithmetic,
                "parameters": count_parameters(module) if module is not None else 0,
                "neurons": units if is_neuron_layer else 0,
                "units incl. input & pooling": units if (is_neuron_layer or kind in ("input", "MaxPool2d")) else 0,
            }
        )
    return pd.DataFrame(rows)


def neuron_counts(model: MnistCNN) -> dict[str, int]:
    """Neuron totals under both conventions (see ``layer_table``)."""
    t = layer_table(model)
    conv = int(t.loc[t.layer.str.startswith("conv"), "neurons"].sum())
    fc = int(t.loc[t.layer.str.startswith("fc"), "neurons"].sum())
    return {"conv": conv, "fc": fc, "total": conv + fc, "incl_input_and_pooling": int(t["units incl. input & pooling"].sum())}


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` (in place) as the pages share it: eval mode, no gradients for its weights (an attack differentiates
    the input only), channels_last: oneDNN's fast layout makes the attacks' small batches 1.4–2× faster on a CPU
    (README, latency). The weights' values are untouched; outputs differ from the standard layout by rounding
    (≤ 1e-6 on the shipped runs, no test prediction changes), so test-set numbers come from ``run.json`` and
    ``RunStore.test_probabilities``, not from these models."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(memory_format=torch.channels_last)


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Softmax probabilities (N×10, on CPU) of ``model`` for float [0, 1] inputs N×1×28×28.

    Gradient-free; does not change the model's mode, so call it on eval-mode models.
    """
    device = next(model.parameters()).device
    with torch.inference_mode():
        return torch.cat([model(x[i : i + batch_size].to(device)).softmax(1).cpu() for i in range(0, len(x), batch_size)])


def architecture_dot(model: MnistCNN) -> str:
    """Graphviz DOT of the network: one box per conv/pool/FC layer (its BatchNorm and ReLU folded into
    the label), the tensor shape on each edge."""
    boxes: list[tuple[list[str], str]] = []  # (label lines, output shape)
    for row in layer_table(model).to_dict("records"):
        if row["type"] in ("ReLU", "BatchNorm2d", "BatchNorm1d", "flatten") and boxes:
            extra = {"ReLU": "+ ReLU", "flatten": "+ flatten"}.get(row["type"], "+ BatchNorm")
            boxes[-1] = (boxes[-1][0] + [extra], row["output shape"])
        else:
            params = [f"{row['parameters']:,} params"] if row["parameters"] else []
            boxes.append(([row["layer"], *params], row["output shape"]))
    newline = "\\n"
    # Top to bottom: left to right, seven boxes and their shapes were ~2,000 px wide, scaled to ~8-px text on a page.
    lines = ["digraph cnn {", "  rankdir=TB; node [shape=box, style=rounded, fontsize=16]; edge [fontsize=16];"]
    lines += [f'  n{i} [label="{newline.join(label)}"];' for i, (label, _) in enumerate(boxes)]
    lines += [f'  n{i} -> n{i + 1} [label=" {boxes[i][1]}"];' for i in range(len(boxes) - 1)]
    return "\n".join([*lines, "}"])


