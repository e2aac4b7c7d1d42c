"""Hard-negative accuracy beside its chance level 1 / (K + 1), and a below-chance result flagged."""

import torch

from fgclip.evaluation.measures import _hard_negative_hits
from fgclip.evaluation.output import format_table


def test_chance_is_the_mean_of_one_over_k_plus_one():
    region = torch.eye(3)[:2]  # (M=2, D=3)
    text = torch.eye(3)[:2]  # each caption matches its region exactly
    negatives = torch.zeros(2, 3, 3)  # (M, K=3, D)
    negatives[1, 0] = region[1]  # region 1's first negative ties its caption: a miss
    present = torch.tensor([[True, True, True], [True, False, False]])
    features = {"region_embeds": region, "region_text_embeds": text, "hard_negative_embeds": negatives,
                "hard_negative_present": present}  # fmt: skip
    hits, regions, chance = _hard_negative_hits(features)
    assert (hits, regions) == (1, 2) and chance == 1 / 4 + 1 / 2


def test_a_below_chance_accuracy_is_flagged_in_the_console_table():
    report = {
        "hard_negatives": {"accuracy": 0.2, "accuracy_chance": 0.25, "below_chance": True, "regions": 8}
    }
    line = format_table(report).splitlines()[1]
    assert "hard-negative accuracy (8 regions) BELOW CHANCE" in line and line.split()[-2:] == [
        "0.200",
        "0.250",
    ]
    report["hard_negatives"].update(accuracy=0.5, below_chance=False)
    assert "BELOW" not in format_table(report)
