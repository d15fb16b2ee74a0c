"""The dry run's cost estimate (orchestrator/cost.py) against hand-worked figures, and the grid it prices."""

import pytest

from dfsweep.config import config_from_dict
from dfsweep.orchestrator.cost import (CUE_S_PER_IMAGE, CUE_TRIAL_S, FORWARD_IMG_S, KERAS_TRIAL_S, TRAIN40_IMG_S,
                                       SplitSizes, _rate, split_sizes, trial_costs)
from dfsweep.orchestrator.sweep import plan_trials

SIZES = SplitSizes(source_train=100, source_val=20, source_test=30, target_adapt=40, target_val=10, target_test=50,
                   estimated=False)


def _cfg(**sweep):
    return config_from_dict({"train": {"input_size_px": 128, "batch_size": 32, "finetune_epochs": 2,
                                       "test_perturbations": {"jpeg": [80], "blur": [], "noise": []}},
                             "sweep": {"seeds": [1, 2], **sweep}})


def test_measured_sizes_give_their_rates_and_others_lie_between():
    assert _rate(FORWARD_IMG_S, 128) == 35.0 and _rate(TRAIN40_IMG_S, 299) == 1.17
    assert FORWARD_IMG_S[299] < _rate(FORWARD_IMG_S, 224) < FORWARD_IMG_S[128]
    assert FORWARD_IMG_S[128] < _rate(FORWARD_IMG_S, 100) < FORWARD_IMG_S[71]
    # beyond the measured sizes the last segment's log-log slope goes on: 299 -> 598 px is 2x the side
    import math

    slope = math.log(7.4 / 35.0) / math.log(299 / 128)
    assert _rate(FORWARD_IMG_S, 598) == pytest.approx(7.4 * 2 ** slope)


def test_costs_by_hand():
    cfg = _cfg(variants=["v1", "v2", "cue"], arms=[{"augmentation": "paper"},
                                            {"augmentation": "none", "unfreeze_layers": 0, "selection": "target_val"}])
    costs = {c.trial_id: c for c in trial_costs(cfg, plan_trials(cfg), SIZES)}
    f, t40 = 1 / 35.0, 1 / 6.0
    tests = (30 + 50) * 2  # clean and one JPEG level
    # the first V1 embeds source train, source val and the scored tests; the second finds them cached
    assert costs["v1-none-s1"].forward_images == 100 + 20 + tests and costs["v1-none-s2"].forward_images == 0
    assert costs["v1-none-s1"].seconds == pytest.approx(13.0 + (100 + 20 + tests) * f)
    assert costs["v1-none-s2"].seconds == pytest.approx(13.0) == KERAS_TRIAL_S
    # the cue trial: its fixed cost and ~2 ms a crop, of all 250
    assert costs["cue-none-s1"].seconds == pytest.approx(9.0 + 0.002 * 250) == CUE_TRIAL_S + CUE_S_PER_IMAGE * 250
    # V2 paper: two fine-tuning epochs of ceil(100 / 32) = 4 batches of 32, a source-val pass each, then scoring
    paper = costs["v2-paper-s1"]
    assert paper.train_images == 2 * 4 * 32 and paper.forward_images == 2 * 20 + 20 + tests
    assert paper.seconds == pytest.approx(13.0 + paper.forward_images * f + 256 * (f + (t40 - f) * 40 / 40))
    # head-only without augmentation: only the target sets it needs embedded, once for both seeds
    head = "v2-none-u0-tval"
    assert costs[f"{head}-s1"].forward_images == 10 + 40 and costs[f"{head}-s2"].forward_images == 0
    assert costs[f"{head}-s1"].train_images == 0


def test_sizes_come_from_the_caps_before_prepare_and_are_unknown_without_caps():
    cfg = config_from_dict({"prepare": {"source_per_class_cap": 100, "target_per_class_cap": 50}})
    s = split_sizes(cfg, None)
    assert s.estimated and (s.source_train, s.source_val, s.source_test) == (120, 40, 40)
    assert (s.target_adapt, s.target_val, s.target_test) == (20, 10, 70) and s.total == 300
    assert split_sizes(config_from_dict({"prepare": {"source_per_class_cap": 0}}), None) is None
    assert split_sizes(cfg, {"source/train": 7, "target/val": 2}).source_train == 7
