"""Every sentence a page shows, word for word: the golden texts, in one place. The verdicts of the Train page (BatchNorm
or not, over seeds, a sweep) and of the Robustness lab (the smallest flipping budget, a defence, a run's robustness).
A change of wording is a change here; what the numbers mean is tested beside the code that computes them."""

import math

import numpy as np
import pytest

from cnn_core import robust as R
from cnn_core.compare import across_seeds, bn_verdict, outcome, seeds_verdict
from cnn_core.sweep import sweep_table, sweep_verdict
from tests.unit.records import diverged, seeded, snap, sweep_run


def test_bn_verdict_reads_the_numbers():
    no_bn, bn = snap("a", False, 0.9900, 10.0, [0.97, 0.985]), snap("b", True, 0.9950, 12.0, [0.981, 0.99])
    assert bn_verdict(no_bn, bn) == ("BatchNorm improved test accuracy by 0.50 points (99.50% vs 99.00% without), "
                                     "and took 20% longer per epoch (12.0 s vs 10.0 s); "
                                     "it reached 98% validation accuracy after 100 steps vs 200. "
                                     "From one seed: repeat with other seeds before drawing a conclusion.")
    same = snap("c", True, 0.9905, 10.2, [0.9])
    assert bn_verdict(no_bn, same).startswith("BatchNorm left test accuracy about the same (99.05% vs 99.00%), "
                                              "and cost about the same time per epoch")
    assert "only the run without BatchNorm reached" in bn_verdict(no_bn, same)


def test_outcome_and_a_verdict_only_between_runs_that_trained():
    assert outcome(snap("a", False, 0.99, 10, [0.99])) == "trained"
    assert outcome(diverged("a", False, 3.1e10, 0.164)) == "diverged"  # lr 10: finite, but far above ln 10
    assert outcome(diverged("a", False, 2.41, 0.5)) == "diverged"  # ln 10 + 0.1 = 2.403: worse than guessing
    assert outcome(diverged("a", False, 2.39, 0.5)) == "trained"
    assert outcome(diverged("a", False, 2.3055, 0.0973)) == "did not learn"  # SGD at 1e-3 after 8 steps: slow, not diverged
    assert outcome({**snap("a", False, 0.99, 10, [0.99]), "steps": [{"step": 1, "loss": float("nan")}]}) == "diverged"
    assert outcome(diverged("a", False, 2.2, 0.19)) == "did not learn"  # under twice chance
    assert outcome(diverged("a", False, 2.2, 0.20)) == "trained"
    assert outcome({**snap("a", False, None, 10, []), "results": None}) == "no numbers yet"
    verdict = bn_verdict(diverged("a", False, 3.1e10, 0.098), diverged("b", True, 2.5, 0.164))
    assert verdict == ("No verdict: the BatchNorm run diverged (final training loss 2.5, test accuracy 16.40%) and the "
                       "no-BatchNorm run diverged (final training loss 3.1e+10, test accuracy 9.80%). Compare runs that "
                       "trained — for a diverged run, try a smaller learning rate.")
    one = bn_verdict(snap("a", False, 0.99, 10, [0.99]), diverged("b", True, 9.0, 0.5))
    assert one.startswith("No verdict: the BatchNorm run diverged (") and "no-BatchNorm" not in one
    early = {**snap("e", False, None, 10, []), "results": None}  # stopped before its first validation
    assert bn_verdict(early, snap("b", True, 0.99, 10, [0.99])).startswith(
        "No verdict: the no-BatchNorm run ended before its first validation. Compare runs that trained")
    stopped = {**snap("s", True, 0.99, 10, [0.99]), "results": None}  # trained, stopped before its test
    assert bn_verdict(snap("a", False, 0.99, 10, [0.99]), stopped) == "Both runs must finish before they can be compared."


def test_across_seeds_mean_and_sample_sd_and_a_verdict_that_weighs_the_spread():
    runs = [seeded(False, 0, 0.980, 10.0), seeded(False, 1, 0.982, 11.0), seeded(False, 2, 0.984, 12.0),
            seeded(True, 2, 0.990, 13.0), seeded(True, 0, 0.986, 12.0), seeded(True, 1, 0.988, 14.0),
            diverged("bn-s9", True, 9.9, 0.1)]  # a diverged run is left out
    t = across_seeds(runs)
    assert list(t["seeds"]) == ["0, 1, 2", "0, 1, 2"]
    # float64 means and sample sds of 3 values: a few roundings, default approx
    assert list(t["test accuracy mean (%)"]) == pytest.approx([98.2, 98.8])
    assert list(t["test accuracy sd"]) == pytest.approx([0.2, 0.2])  # sample sd of 98.0, 98.2, 98.4
    assert list(t["seconds / epoch mean"]) == pytest.approx([11.0, 13.0]) and t["seconds / epoch sd"][0] == pytest.approx(1.0)
    assert seeds_verdict(runs) == ("Over 3 seeds, BatchNorm improved mean test accuracy by 0.60 points (98.80 ± 0.20% vs "
                                   "98.20 ± 0.20%) — larger than the spread between seeds; seconds per epoch 13.0 ± 1.0 vs 11.0 ± 1.0.")
    close = [seeded(False, 0, 0.980, 10), seeded(False, 1, 0.990, 10), seeded(True, 0, 0.985, 10), seeded(True, 1, 0.986, 10)]
    assert seeds_verdict(close).startswith("Over 2 seeds, BatchNorm improved mean test accuracy by 0.05 points (98.55 ± ")
    assert "within the spread between seeds (sd up to 0.71): no clear effect" in seeds_verdict(close)
    # A third of a test digit apart (means of three seeds): unchanged at the 0.01 points a sentence prints.
    third = [seeded(False, s, a, 10) for s, a in enumerate((0.98, 0.99, 0.99))] + \
            [seeded(True, s, a, 10) for s, a in enumerate((0.98, 0.99, 0.9901))]
    assert seeds_verdict(third).startswith("Over 3 seeds, BatchNorm left mean test accuracy unchanged (98.67 ± ")
    assert seeds_verdict(runs[:4]) == "Both arms need at least two seeds that trained."


def test_bn_verdict_every_wording():
    """The sentence for BatchNorm lowering accuracy and saving time, the 5% and 60% time wordings, only the BatchNorm
    run reaching 98% (steps with a thousands separator), neither reaching it, and a run that did not learn."""
    assert bn_verdict(snap("a", False, 0.995, 10.0, [0.97]), snap("b", True, 0.990, 8.0, [0.97])) == (
        "BatchNorm lowered test accuracy by 0.50 points (99.00% vs 99.50% without), "
        "and took 20% less time per epoch (8.0 s vs 10.0 s). "
        "From one seed: repeat with other seeds before drawing a conclusion.")
    only_bn = bn_verdict(snap("a", False, 0.99, 20.0, [0.97], 1000), snap("b", True, 0.99, 21.0, [0.985], 1000))
    assert only_bn == ("BatchNorm left test accuracy about the same (99.00% vs 99.00%), "
                       "and took 5% longer per epoch (21.0 s vs 20.0 s); "  # exactly 5% is no longer "about the same"
                       "only the BatchNorm run reached 98% validation accuracy (after 1,000 steps). "
                       "From one seed: repeat with other seeds before drawing a conclusion.")
    assert "and took 60% longer per epoch (16.0 s vs 10.0 s)." in bn_verdict(
        snap("a", False, 0.99, 10.0, [0.97]), snap("b", True, 0.99, 16.0, [0.97]))
    lazy = diverged("b", True, 2.2, 0.15)
    assert bn_verdict(snap("a", False, 0.99, 10, [0.99]), lazy) == (
        "No verdict: the BatchNorm run did not learn (final training loss 2.2, test accuracy 15.00%). "
        "Compare runs that trained — for a diverged run, try a smaller learning rate.")


def test_a_stopped_run_that_diverged_is_reported_with_its_validation_accuracy():
    """A run stopped before its test has no test accuracy: the verdict quotes its last validation accuracy."""
    stopped = {**diverged("b", True, 9.0, 0.5), "results": None}
    assert bn_verdict(snap("a", False, 0.99, 10, [0.99]), stopped) == (
        "No verdict: the BatchNorm run diverged (final training loss 9, validation accuracy 50.00%). "
        "Compare runs that trained — for a diverged run, try a smaller learning rate.")


def test_across_seeds_one_arm_two_seeds_and_a_lower_mean():
    """An arm is listed even when the other has no run that trained; two seeds give a sample sd; the verdict says
    "lowered" when BatchNorm's mean is lower, and a difference equal to the spread is not called larger."""
    t = across_seeds([seeded(True, 1, 0.99, 12.0), seeded(True, 0, 0.98, 10.0)])
    assert list(t["BatchNorm"]) == [True] and list(t["seeds"]) == ["0, 1"]
    # float64 sample sds of two values: a few roundings, default approx
    assert t["test accuracy sd"][0] == pytest.approx(math.sqrt(0.5)) and t["seconds / epoch sd"][0] == pytest.approx(math.sqrt(2))
    worse = [seeded(False, 0, 0.986, 12.0), seeded(False, 1, 0.988, 14.0), seeded(False, 2, 0.990, 13.0),
             seeded(True, 0, 0.980, 10.0), seeded(True, 1, 0.982, 11.0), seeded(True, 2, 0.984, 12.0)]
    assert seeds_verdict(worse) == ("Over 3 seeds, BatchNorm lowered mean test accuracy by 0.60 points (98.20 ± 0.20% vs "
                                    "98.80 ± 0.20%) — larger than the spread between seeds; seconds per epoch 11.0 ± 1.0 vs 13.0 ± 1.0.")
    # Exact binary fractions: the means differ by 1.5625 points and each arm's sd is exactly 1.5625.
    tie = [seeded(False, s, a, 10.0) for s, a in enumerate((0.9375, 0.953125, 0.96875))] + \
          [seeded(True, s, a, 10.0) for s, a in enumerate((0.953125, 0.96875, 0.984375))]
    assert "within the spread between seeds (sd up to 1.56): no clear effect" in seeds_verdict(tie)


def test_verdicts_count_a_tenth_of_a_point_in_whole_test_digits():
    """99.10% vs 99.00% is 10 test digits, the threshold itself: "improved by 0.10 points", though the float difference
    is 0.0999…; equal means over seeds are "unchanged", never "lowered by 0.00 points"."""
    assert 99.1 - 99.0 < 0.1  # the float trap the verdicts must not fall into
    assert bn_verdict(snap("a", False, 0.990, 10.0, [0.97]), snap("b", True, 0.991, 10.0, [0.97])).startswith(
        "BatchNorm improved test accuracy by 0.10 points (99.10% vs 99.00% without)")
    same = [seeded(bn, s, a, 10.0) for bn in (False, True) for s, a in enumerate((0.98, 0.99))]
    assert seeds_verdict(same).startswith("Over 2 seeds, BatchNorm left mean test accuracy unchanged (98.50 ± 0.71% vs")


def test_the_sentence_ranks_what_trained_names_what_did_not_and_gives_the_measured_ranges():
    runs = [sweep_run("sgd", 0.0980, 5000, final_loss=3.1e10), sweep_run("momentum", 0.9850, 4800, steps_to_98=300),
            sweep_run("rmsprop", 0.9895, 4700, steps_to_98=200), sweep_run("adam", 0.9901, 4400, steps_to_98=150)]
    assert sweep_verdict(runs, "optimizer") == (
        "Test accuracy, best first: adam 99.01%, rmsprop 98.95%, momentum 98.50% — adam and rmsprop are about the same at the "
        "top; sgd diverged; training speed from 4,400 images/s (adam) to 5,000 images/s (sgd); about the same peak memory per step "
        "(27 MiB to 27 MiB); first to 98% validation accuracy: adam (after 150 steps, 19,200 digits). From one seed: "
        "differences under 0.1 point are within the run-to-run spread.")
    table = sweep_table(runs, "optimizer")
    assert list(table["optimizer"]) == ["sgd", "momentum", "rmsprop", "adam"]
    assert list(table["outcome"]) == ["diverged", "trained", "trained", "trained"]
    # the runs' own numbers, copied into the table: exact
    assert list(table.columns[:3]) == ["optimizer", "run", "outcome"] and list(table["peak MiB / step"]) == [27.0] * 4

    conv = [sweep_run("builtin", 0.99, 4600, mib=27.3, field="conv"), sweep_run("unfold", 0.985, 1700, mib=92.2, field="conv")]
    assert sweep_verdict(conv, "conv").startswith(
        "Test accuracy, best first: builtin 99.00%, unfold 98.50% — builtin is best, 0.50 points ahead of unfold; training speed "
        "from 1,700 images/s (unfold) to 4,600 images/s (builtin); peak memory per step from 27 MiB (builtin) to "
        "92 MiB (unfold).")
    same = [sweep_run("sgd", 0.99, 4600, field="optimizer"), sweep_run("adam", 0.98, 4300, field="optimizer")]
    assert "about the same training speed (4,300 images/s to 4,600 images/s)" in sweep_verdict(same, "optimizer")
    # Digits, not steps, decide who was first to 98%: batch 512 took fewer steps but saw more digits.
    sizes = [sweep_run(32, 0.99, 3000, field="batch_size", batch=32, steps_to_98=400),
             sweep_run(512, 0.99, 9000, field="batch_size", batch=512, steps_to_98=50)]
    assert "first to 98% validation accuracy: 32 (after 400 steps, 12,800 digits)" in sweep_verdict(sizes, "batch_size")
    lrs = [sweep_run(1e-4, 0.98, 4000, field="lr"), sweep_run(1e-2, None, 4000, field="lr")]
    assert sweep_verdict(lrs, "lr").startswith("Only 1e-4 trained: test accuracy 98.00%; 1e-2 was stopped before its test")
    assert sweep_verdict([sweep_run("sgd", 0.09, 4000, final_loss=9.0), sweep_run("adam", None, 4000, final_loss=9.0)],
                         "optimizer") == "No verdict: sgd diverged, adam diverged."


def test_the_batchnorm_sweep_is_the_pair_and_gets_its_verdict():
    pair = [sweep_run(True, 0.995, 4500, field="batchnorm"), sweep_run(False, 0.990, 5400, field="batchnorm")]
    assert sweep_verdict(pair, "batchnorm").startswith("BatchNorm improved test accuracy by 0.50 points (99.50% vs 99.00%")


def test_flip_budgets_are_described_in_grey_levels():
    limit = R.flip_search_limit(0.5)
    # K·tol in float64: 128 · (1/255) and 2 · 0.1 are exact (powers of 2); 6 · (1/255) vs 6 / 255 is one rounding apart
    assert limit == 128 / 255 and R.flip_search_limit(0.02) == pytest.approx(6 / 255) and R.flip_search_limit(0.2, 0.1) == 0.2
    assert R.describe_flip_eps(36 / 255, limit) == "0.141 = 36/255"
    assert R.describe_flip_eps(0.0, limit) == "0 (already misclassified)"
    assert R.describe_flip_eps(float("inf"), limit) == "not flipped up to ε = 0.502 (128/255)"


def test_flip_verdict_compares_the_two_budgets():
    inf, limit = float("inf"), 128 / 255
    assert R.flip_verdict("Baseline", 36 / 255, "Adv", 74 / 255, limit) == \
        "Adv needs 2.1× the budget of Baseline: 74 vs 36 grey levels per pixel."
    assert R.flip_verdict("Adv", 74 / 255, "Baseline", 36 / 255, limit) == \
        "Adv needs 2.1× the budget of Baseline: 74 vs 36 grey levels per pixel."
    assert R.flip_verdict("A", 20 / 255, "B", 20 / 255, limit) == "Both flip at the same budget, 20/255."
    assert R.flip_verdict("A", 32 / 255, "B", inf, limit) == \
        "B was not flipped up to ε = 128/255; A flips at 32/255: more than 4.0× the budget."
    assert R.flip_verdict("A", inf, "B", inf, limit) == "Neither model was flipped up to ε = 128/255."
    assert R.flip_verdict("A", 0.0, "B", 9 / 255, limit) == "A already gets it wrong without any attack."
    assert R.flip_verdict("A", 0.0, "B", 0.0, limit) == "A and B already get it wrong without any attack."


@pytest.mark.parametrize("res, threshold, start", [
    ({"PGD": 0.10, "PGD, defence on": 0.11, "adaptive attacker": 0.05}, False, "the defence does not help here (+1.0"),
    ({"PGD": 0.10, "PGD, defence on": 0.60, "adaptive attacker": 0.20}, False, "the defence only worked against"),
    ({"PGD": 0.10, "PGD, defence on": 0.60, "adaptive attacker": 0.40}, False, "the adaptive attack takes back part"),
    ({"PGD": 0.10, "PGD, defence on": 0.90, "adaptive attacker": 0.89}, True, "the threshold holds at this ε"),
    ({"PGD": 0.10, "PGD, defence on": 0.90, "adaptive attacker": 0.89}, False, "this adaptive attack did not break it"),
])
def test_the_defence_verdict_reads_the_numbers(res, threshold, start):
    assert R.defence_verdict(res, threshold).startswith(start)


def test_the_robustness_sentence_follows_what_the_run_is():
    plain = {0.0: 0.993, 0.1: 0.766, 0.2: 0.005, 0.3: 0.0}
    assert R.robustness_sentence({"batchnorm": False, "adversarial": "none"}, plain) == (
        "99.3% on clean digits, yet PGD at ε = 0.2 (51/255 per pixel; the digits stay perfectly readable) leaves 0.5%: "
        "accuracy is not robustness.")
    bn = {0.0: 0.996, 0.1: 0.029, 0.2: 0.0, 0.3: 0.0}
    assert R.robustness_sentence({"batchnorm": True, "adversarial": "none"}, bn, plain).startswith(
        "a little more clean accuracy (99.6%) but far more fragile: PGD at ε = 0.1 leaves 2.9% (without BatchNorm 76.6%)")
    assert R.robustness_sentence({"batchnorm": True, "adversarial": "none"}, bn) == (
        "BatchNorm changes clean accuracy (99.6%) but buys no robustness (ε = 0.1: 2.9%).")
    adv = {0.0: 0.991, 0.1: 0.972, 0.2: 0.931, 0.3: 0.226}
    assert R.robustness_sentence({"batchnorm": False, "adversarial": "pgd", "adv_epsilon": 0.2}, adv) == (
        "trained on PGD examples at ε = 0.2: 99.1% clean (the price of robustness), but 93.1% under PGD at its training "
        "budget; beyond it, at ε = 0.3, 22.6%.")


def test_flip_budgets_at_the_top_of_the_search_are_counted_in_255ths():
    """Budgets near the largest the page searches (128/255 by default, up to 153/255) are shown as k/255 with the
    right k: the grey levels a person reads must not drift by one at the top of the range."""
    limit, top = 128 / 255, 153 / 255
    assert R.describe_flip_eps(128 / 255, limit) == "0.502 = 128/255"
    assert R.flip_verdict("A", 128 / 255, "B", 128 / 255, limit) == "Both flip at the same budget, 128/255."
    assert R.flip_verdict("A", 128 / 255, "B", float("inf"), limit) == \
        "B was not flipped up to ε = 128/255; A flips at 128/255: more than 1.0× the budget."
    assert R.flip_verdict("A", 140 / 255, "B", 150 / 255, top) == \
        "B needs 1.1× the budget of A: 150 vs 140 grey levels per pixel."


def test_flip_verdict_names_the_second_model_when_only_it_is_already_wrong():
    assert R.flip_verdict("A", 9 / 255, "B", 0.0, 128 / 255) == "B already gets it wrong without any attack."


def test_the_defence_verdict_at_its_boundaries_and_in_full():
    """Exactly 2 points gained is not 'no help' (the rule is under 2); exactly 3 points taken back by the adaptive
    attacker is not 'more than 3'; a defence that hurts shows its negative points; the two 'held' sentences word
    for word."""
    assert R.defence_verdict({"PGD": 0.0, "PGD, defence on": 0.02, "adaptive attacker": 0.0}, False) == \
        "the defence only worked against an attacker who did not know about it."
    assert R.defence_verdict({"PGD": 0.30, "PGD, defence on": 0.10, "adaptive attacker": 0.05}, False) == \
        "the defence does not help here (-20.0 points under attack)."
    # The decision reads the points as the sentence prints them (one decimal): 1.6 is under 2, 1.96 prints as 2.0.
    assert R.defence_verdict({"PGD": 0.10, "PGD, defence on": 0.116, "adaptive attacker": 0.116}, False) == \
        "the defence does not help here (+1.6 points under attack)."
    assert "does not help" not in R.defence_verdict({"PGD": 0.10, "PGD, defence on": 0.1196, "adaptive attacker": 0.0}, False)
    # 10.2 points above no defence is more than 10: the adaptive attack did not undo it all, yet it took back 3.2 > 3
    assert R.defence_verdict({"PGD": 0.10, "PGD, defence on": 0.234, "adaptive attacker": 0.202}, False) == \
        "the adaptive attack takes back part of what the defence gained."
    held = {"PGD": 0.10, "PGD, defence on": 0.93, "adaptive attacker": 0.90}
    assert R.defence_verdict(held, True) == (
        "the threshold holds at this ε: MNIST pixels are nearly all 0 or 1, and a small change cannot push them across "
        "0.5. Raise ε to see where it stops holding; on natural images, whose pixels are not near 0 or 1, such input "
        "transforms are broken by adaptive attacks (Athalye et al., 2018).")
    assert R.defence_verdict(held, False) == (
        "this adaptive attack did not break it at this ε; stronger ones (more steps, restarts) should be tried before "
        "trusting it.")


def test_the_robustness_sentence_for_other_configs_and_budgets():
    """A config without an 'adversarial' entry (a run saved before adversarial training existed) is a plain run;
    an adversarially trained run is quoted at its own training budget (and a budget that was not measured still
    gives a sentence); BatchNorm is 'far more fragile' only when more than 10 points below the reference at ε = 0.1,
    and that sentence ends with its citation."""
    plain = {0.0: 0.993, 0.1: 0.766, 0.2: 0.005, 0.3: 0.0}
    assert R.robustness_sentence({"batchnorm": False}, plain) == (
        "99.3% on clean digits, yet PGD at ε = 0.2 (51/255 per pixel; the digits stay perfectly readable) leaves 0.5%: "
        "accuracy is not robustness.")
    adv = {0.0: 0.991, 0.1: 0.972, 0.2: 0.931, 0.3: 0.226}
    assert R.robustness_sentence({"adversarial": "fgsm", "adv_epsilon": 0.1}, adv) == (
        "trained on FGSM examples at ε = 0.1: 99.1% clean (the price of robustness), but 97.2% under PGD at its training "
        "budget; beyond it, at ε = 0.3, 22.6%.")
    unmeasured = R.robustness_sentence({"adversarial": "pgd", "adv_epsilon": 0.12}, adv)
    assert unmeasured.startswith("trained on PGD examples at ε = 0.12: 99.1% clean") and unmeasured.endswith("22.6%.")
    bn = {0.0: 0.996, 0.1: 0.70, 0.2: 0.0, 0.3: 0.0}
    assert R.robustness_sentence({"batchnorm": True}, bn, plain) == (
        "BatchNorm changes clean accuracy (99.6%) but buys no robustness (ε = 0.1: 70.0%).")
    assert R.robustness_sentence({"batchnorm": True}, {**bn, 0.1: 0.4}, {0.1: 0.5}).startswith("BatchNorm changes")
    fragile = {0.0: 0.996, 0.1: 0.029, 0.2: 0.0, 0.3: 0.0}
    assert R.robustness_sentence({"batchnorm": True, "adversarial": "none"}, fragile, plain) == (
        "a little more clean accuracy (99.6%) but far more fragile: PGD at ε = 0.1 leaves 2.9% (without BatchNorm "
        "76.6%). BatchNorm is known to make networks more sensitive to small input changes (Galloway et al., 2019).")


def test_verdicts_count_whole_points_and_name_the_budget_they_quote():
    """Exactly 2 points gained (10 of 500 digits, float32 means: 0.12 − 0.10 = 0.0199…) is a gain, not "does not help
    (+2.0 points)"; exactly 3 points taken back is not "more than 3". An adversarially trained run whose budget was not
    measured is quoted at the nearest measured ε, named, not silently at 0.2."""

    f = np.float32
    gain = R.defence_verdict({"PGD": f(0.10), "PGD, defence on": f(0.12), "adaptive attacker": f(0.12)}, False)
    assert not gain.startswith("the defence does not help")
    held = R.defence_verdict({"PGD": f(0.10), "PGD, defence on": f(0.93), "adaptive attacker": f(0.90)}, False)
    assert held.startswith("this adaptive attack did not break it")  # 3 points back: not "more than 3"
    pgd = {0.0: 0.991, 0.05: 0.98, 0.1: 0.972, 0.2: 0.931, 0.3: 0.226}
    assert "but 97.2% under PGD at ε = 0.1 (its budget 0.12 was not measured); beyond it, at ε = 0.3, 22.6%." in \
        R.robustness_sentence({"adversarial": "pgd", "adv_epsilon": 0.12}, pgd)
    assert R.robustness_sentence({"adversarial": "pgd", "adv_epsilon": 0.3}, pgd).endswith(
        "but 22.6% under PGD at its training budget.")  # no "beyond it" at its own budget
