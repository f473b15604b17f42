"""What every attack of the registry (``cnn_core.robust_attacks``) must do, whatever it computes: one call shape,
images within the budget and in [0, 1], nothing at ε = 0, weights untouched, the settings it says it reads and no
others. A new attack file is tested here by being there; its own file tests its formula."""

import dataclasses

import pytest
import torch

from cnn_core import robust as R
from cnn_core.data import to_float
from cnn_core.robust_attacks import ATTACKS, AttackSettings, get_attack

pytestmark = [pytest.mark.usefixtures("weights_kept"), pytest.mark.numeric]
EACH = pytest.mark.parametrize("attack", ATTACKS.values(), ids=list(ATTACKS))
FEW = AttackSettings(steps=5)  # enough steps to attack, few enough for 100 digits in a second


@pytest.fixture(scope="module")
def digits(mnist):
    return to_float(mnist.test_images[:100]), mnist.test_labels[:100]


def test_the_registry_holds_each_attack_once_with_a_line_of_its_own():
    assert list(ATTACKS)[:3] == ["fgsm", "pgd", "deepfool"]  # weakest first; later ones may follow
    assert all(name == a.name and name.isidentifier() and name.islower() for name, a in ATTACKS.items())
    assert len({a.dash for a in ATTACKS.values()}) == len(ATTACKS)  # the curves tell the attacks apart
    assert all(a.uses <= {f.name for f in dataclasses.fields(AttackSettings)} for a in ATTACKS.values())
    assert get_attack("pgd") is ATTACKS["pgd"]
    with pytest.raises(ValueError, match="'cw'.*fgsm, pgd, deepfool"):  # the name asked for, and what there is
        get_attack("cw")


@EACH
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_an_attack_stays_within_its_budget_and_in_pixel_range(shipped, digits, attack, eps):
    x, y = digits
    for settings in (FEW, dataclasses.replace(FEW, target=3)):
        x_adv = attack.run(shipped["baseline"], x, y, eps, settings)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        # x ± ε rounds to float32 (≤ 6e-8 at pixels ≤ 1) and ε itself is stored in float32: 1e-6 is that with slack
        assert x_adv.min() >= 0 and x_adv.max() <= 1 and (x_adv - x).abs().max() <= eps + 1e-6


@EACH
def test_an_attack_with_no_budget_returns_the_digits_unchanged(shipped, digits, attack):
    x, y = digits
    assert torch.equal(attack.run(shipped["batchnorm"], x, y, 0.0, FEW), x)  # a projection into a ball of radius 0: exact


@EACH
def test_an_attack_breaks_the_baseline_at_a_budget_people_still_read_through(shipped, digits, attack):
    """At ε = 0.3 every attack here leaves the baseline under half its clean accuracy on 100 digits (measured: FGSM
    7%, PGD-5 0%, DeepFool 0%; clean 100%). A registered "attack" that does not attack fails here."""
    x, y = digits
    model = shipped["baseline"]
    assert R.robust_accuracy(model, x, y, attack.name, 0.3, settings=FEW) < 0.5 * R.robust_accuracy(model, x, y, "clean", 0)


@EACH
def test_a_targeted_attack_makes_digits_its_target(shipped, digits, attack):
    if "target" not in attack.uses:
        pytest.skip(f"{attack.label} is not targeted")
    x, y = digits
    model = shipped["baseline"]
    with torch.no_grad():
        towards = (model(attack.run(model, x, y, 0.3, dataclasses.replace(FEW, target=3))).argmax(1) == 3).sum()
        away = (model(attack.run(model, x, y, 0.3, FEW)).argmax(1) == 3).sum()
    assert towards > away + 20, (towards, away)


@EACH
def test_the_settings_an_attack_does_not_read_change_nothing(shipped, digits, attack):
    """The page disables the controls an attack does not read (``uses``): they must indeed not matter."""
    x, y = digits[0][:20], digits[1][:20]
    model = shipped["baseline"]
    base = attack.run(model, x, y, 0.2, FEW)
    others = {"steps": 2, "step_size": 0.05, "random_start": False, "target": 5, "seed": 7}
    for field, value in others.items():
        if field not in attack.uses:  # the same computation: exact
            assert torch.equal(attack.run(model, x, y, 0.2, dataclasses.replace(FEW, **{field: value})), base), field
