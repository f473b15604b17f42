"""The assignment report: every question's section in order, every figure, this project's numbers, and nothing
fetched from outside (it must open offline)."""

import re
from pathlib import Path

import pytest

from cnn_core.report import SECTIONS, build_report
from cnn_core.store import RunStore

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(mnist):
    said = []
    page, figures = build_report(RunStore(REPO / "checkpoints"), mnist, ("baseline", "batchnorm"), progress=said.append)
    return page, figures, said


def test_the_report_answers_every_question_in_order_with_its_figures(report):
    page, figures, said = report
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == list(SECTIONS)
    # curves, 2 prediction grids, 2 filter grids, 2 activation grids, occlusion, 3 × (images + cost) for a, b and
    # class models, noise + transfer for c, robustness curves
    assert figures == 17 and page.count('class="plotly-graph-div"') == 17
    assert said == ["Training", "The network", "Visualizing", "Adversarial examples", "Defences"]


def test_the_report_states_this_projects_numbers_and_needs_no_network(report):
    page, _, _ = report
    for fact in ("<b>799,078</b> parameters: <b>9,568</b> in the convolutional layers and <b>789,510</b>",
                 "<b>31,870</b> neurons", "test accuracy <b>99.42%</b> (9,942 of 10,000", "<b>99.53%</b>",
                 "the attacks use <b>batchnorm</b>", "784,500", "BatchNorm improved test accuracy by 0.11 points"):
        assert fact in page
    bundle, body = page.split("</script>", 1)  # plotly.js itself, inside the file (it names URLs it never fetches here)
    assert "plotly" in bundle and not re.search(r"<script[^>]+src=", page) and "http" not in body
