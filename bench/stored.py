"""How far the shipped runs' stored results are from what this machine's numeric path computes live (issue 27).

The stored views were computed once, on one CPU. A CPU with other kernels (AVX2 instead of AVX-512, no bf16) sums
in another order; the attacks take signs of gradients and iterate, so a rounding difference can move a pixel's step
and, a few steps later, a digit's outcome. This prints, per shipped run, the largest difference between stored and
live at a spread of ε, in digits, for the universal perturbation (fooling rate, accuracy, δ's pixels) and the
defences (five accuracies each), and the test probabilities' largest difference and changed argmaxes.

    python -m bench.stored                  # this machine's path
    make bench-stored                       # both: this machine's path, then the float32 AVX2 path forced
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from cnn_core import robust as R
from cnn_core import views as V
from cnn_core.data import load_mnist, to_float
from cnn_core.model import for_inference
from cnn_core.store import SHIPPED_RUNS, RunStore


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stored", description=__doc__.split("\n\n")[0])
    ap.add_argument("--universal", default="0.05,0.1,0.15,0.2,0.25,0.3,0.4,0.5", help="ε of the universal δ to recompute")
    ap.add_argument("--defences", default="0.1,0.2,0.3", help="ε of the defence views to recompute")
    args = ap.parse_args(argv)
    data, store = load_mnist(), RunStore()
    print(f"torch {torch.__version__}, ATen kernels {torch.backends.cpu.get_cpu_capability()}, "
          f"CNN_LAB_BF16={os.environ.get('CNN_LAB_BF16', '(unset)')}, ONEDNN_MAX_CPU_ISA="
          f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}")
    for name in SHIPPED_RUNS:
        model = for_inference(store.load_model(name)[0])
        with torch.no_grad():
            probs = torch.softmax(model(to_float(data.test_images)), 1).numpy()
        stored_probs = store.test_probabilities(name, lambda: None)
        moved = int((probs.argmax(1) != stored_probs.argmax(1)).sum())
        print(f"{name}: test probabilities max |Δ| {np.abs(probs - stored_probs).max():.2e}, {moved} argmax changed")
        for eps in map(float, args.universal.split(",")):
            stored, live = V.stored_universal(store, name, eps), V.universal_view(model, data, eps)
            diff = {k: round(abs(stored.rate[k] - live.rate[k]) * V.UNIVERSAL_TEST) for k in ("fooling_rate", "accuracy")}
            same = (np.abs(stored.delta - live.delta) < 1e-4).mean()
            print(f"  universal ε={eps:.2f}: |Δ| in digits of {V.UNIVERSAL_TEST}: {diff}; δ pixels equal {same:.1%}")
        for eps in map(float, args.defences.split(",")):
            for d in R.DEFENCES:
                stored, live = V.stored_defence(store, name, d, eps), V.defence_view(model, data, d, eps)
                worst = max(abs(stored[k] - live[k]) for k in stored) * V.DEFENCE_DIGITS
                print(f"  {d} ε={eps:.2f}: largest |Δ| {worst:.0f} digits of {V.DEFENCE_DIGITS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
