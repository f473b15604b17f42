"""The pieces of ``python -m cnn_core.bench --conv`` that decide what it reports."""

import torch
import torch.nn.functional as F

from cnn_core.bench import _layouts, peak_bytes


def test_cpu_peak_memory_counts_what_the_function_allocates_at_once():
    cpu = torch.device("cpu")
    assert peak_bytes(lambda: torch.empty(2**20), cpu) == 4 * 2**20  # one float32 tensor of 1 Mi elements, freed
    assert peak_bytes(lambda: [torch.empty(2**20) for _ in range(3)], cpu) == 12 * 2**20  # three alive together
    assert peak_bytes(lambda: [torch.empty(2**20).sum() for _ in range(3)], cpu) < 5 * 2**20  # one at a time


def test_every_layout_tried_computes_the_same_thing():
    torch.manual_seed(0)
    x, w, b = torch.rand(4, 3, 6, 6), torch.randn(5, 27), torch.randn(5)
    cols, dy = F.unfold(x, 3, padding=1), torch.randn(4, 5, 36)
    results = {name: fn() for name, fn in _layouts(cols, w, b, dy).items()}
    y = F.conv2d(x, w.view(5, 3, 3, 3), b, padding=1).flatten(2)
    dw = torch.nn.grad.conv2d_weight(x, (5, 3, 3, 3), dy.view(4, 5, 6, 6), padding=1).flatten(1)
    assert len(results) == 7
    for name, value in results.items():  # float32 sums of 27 (forward) or 144 (dW) products in another order: ~1e-6
        expected = y if name.startswith("forward") else dw
        torch.testing.assert_close(value.reshape(expected.shape) if "addmm" not in name else
                                   value.view(4, 36, 5).transpose(1, 2), expected, rtol=1e-5, atol=1e-5)
