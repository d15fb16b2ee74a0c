"""What a sweep will cost before it runs (`dfsweep run --dry-run`): per trial, the images its backbone sees forward
and in training steps, turned into minutes at reference rates, plus each trial's fixed cost.

The rates are dfsweep's own, measured inside trials on the demo (128 px, one trial at a time with 2 threads, each
trial's `time_total_s` in `RUN_DIR/tune/sweep-001/<trial>/result.json`) on a 2-core x86_64 machine on 2026-12-06: the
first V1 embedded 2,120 crops in 60 s, a V1 on cached features took 13 s in all, a cue trial 9 s, a V2 fine-tuning
the last 40 layers 158 s (13 fixed, 58 forward, the rest 512 training images). Outside dfsweep the same machine ran
Xception forward at 44 img/s and a 40-layer training step at 11 img/s (batch 32): in a trial, PNG decoding, the
perturbations, Keras' per-call overhead and tracing take the rest. Other sizes follow ENVIRONMENT.md's
micro-benchmarks' ratios between sizes (a machine 1.6x faster at the forward pass measured those). An estimate, not a
promise: another CPU scales every figure by about the same factor, so the ranking of arms and the share each takes
hold. Checked against the demo: one 2-thread trial at a time with 4 robustness levels, estimated 10.5 minutes, ran
12:04; as configured now (two 1-thread trials at a time, 3 levels), estimated 10, ran 7:49. No reference rate has been measured on a GPU yet, so trials that ask for GPUs are estimated as if they ran on those CPUs
(an upper bound) and the output says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dfsweep.config import Config

REFERENCE_CPUS = 2
# Images per second in a trial on the reference machine, by input size (px): a forward pass of Xception, and a
# training step of the head plus its last 40 layers (backward through them included). 128 px measured in trials; 71
# and 299 px scaled from it by ENVIRONMENT.md's micro-benchmark ratios (forward 123 / 71 / 15, training 44 / 8.6).
FORWARD_IMG_S = {71: 60.6, 128: 35.0, 299: 7.4}
TRAIN40_IMG_S = {128: 6.0, 299: 1.17}
# Every Keras trial's fixed cost (its process, TensorFlow's import, the model and its weights, tracing, the head's
# epochs on cached features), and a cue trial's; the cue arm's histograms of decoded crops: ~2 ms a crop.
KERAS_TRIAL_S = 13.0
CUE_TRIAL_S = 9.0
CUE_S_PER_IMAGE = 0.002


def _rate(table: dict[int, float], size_px: int) -> float:
    """Images/s at `size_px`, interpolated (and extrapolated) linearly in log-size / log-rate between measured sizes."""
    sizes = sorted(table)
    if size_px in table:
        return table[size_px]
    lo, hi = (sizes[0], sizes[1]) if size_px < sizes[0] else (sizes[-2], sizes[-1]) if size_px > sizes[-1] else \
        next((a, b) for a, b in zip(sizes, sizes[1:]) if a < size_px < b)
    slope = math.log(table[hi] / table[lo]) / math.log(hi / lo)
    return table[lo] * (size_px / lo) ** slope


@dataclass(frozen=True)
class SplitSizes:
    """Crops per split, from the run's manifest when it has one, else from the caps and fractions (`estimated`)."""

    source_train: int
    source_val: int
    source_test: int
    target_adapt: int
    target_val: int
    target_test: int
    estimated: bool

    @property
    def total(self) -> int:
        return (self.source_train + self.source_val + self.source_test + self.target_adapt + self.target_val
                + self.target_test)


def split_sizes(cfg: Config, counts: dict[str, int] | None) -> SplitSizes | None:
    """`counts`: crops by "domain/split" (a prepared run's manifest); without it, the caps times the fractions
    (None when a cap is 0, i.e. every file: then the size is unknown until prepare has scanned)."""
    p = cfg.prepare
    if counts:
        get = lambda key: int(counts.get(key, 0))  # noqa: E731
        return SplitSizes(get("source/train"), get("source/val"), get("source/test"), get("target/adapt"),
                          get("target/val"), get("target/test"), estimated=False)
    if not (p.source_per_class_cap and p.target_per_class_cap):
        return None
    src, tgt = 2 * p.source_per_class_cap, 2 * p.target_per_class_cap
    val, test = round(src * p.source_val_fraction), round(src * p.source_test_fraction)
    t_val, t_adapt = round(tgt * p.target_val_fraction), round(tgt * p.target_adapt_fraction)
    return SplitSizes(src - val - test, val, test, t_adapt - t_val, t_val, tgt - t_adapt, estimated=True)


@dataclass(frozen=True)
class TrialCost:
    trial_id: str
    forward_images: int  # backbone forward passes (embedding, validation, scoring)
    train_images: int  # backbone training steps, counted in images
    seconds: float  # at the reference rates, on REFERENCE_CPUS cores, the trial's fixed cost included


def trial_costs(cfg: Config, trials: list[dict], sizes: SplitSizes) -> list[TrialCost]:
    """Each planned trial's work and time at the reference rates. Frozen-backbone features are counted once, by the
    first trial that needs them, when the sweep shares them (sweep.share_work, and weights that are not random); every
    trial's head epochs, on those features, are part of its fixed cost."""
    t, s = cfg.train, sizes
    levels = len(t.perturbation_levels())
    tests = s.source_test + s.target_test
    scored = s.source_val + tests * (1 + levels)  # clean source val, clean and degraded tests
    embedded: set[str] = set()
    shared = cfg.sweep.share_work and t.weights != "none"  # random backbone weights differ per seed (features.py)
    forward_s = 1 / _rate(FORWARD_IMG_S, t.input_size_px)

    def embed(*sets: tuple[str, int]) -> int:
        """Forward passes to embed these feature sets, those already embedded (and shared) left out."""
        n = 0
        for name, size in sets:
            if name not in embedded or not shared:
                n += size
                embedded.add(name)
        return n

    base_sets = (("source-train", s.source_train), ("source-val", s.source_val), ("scored-tests", tests * (1 + levels)))
    out = []
    for trial in trials:
        variant, forward, train, extra = trial["variant"], 0, 0, 0.0
        if variant == "cue":
            extra = CUE_TRIAL_S + CUE_S_PER_IMAGE * s.total
        elif variant == "v1" or (variant == "v2" and not trial.get("unfreeze_layers", t.unfreeze_last_layers)
                                 and trial.get("augmentation") == "none"):
            # features only: the head (and a head-only fine-tuning without augmentation) trains on embeddings
            tval = trial.get("selection") == "target_val"
            sets = base_sets + ((("target-val", s.target_val), ("target-adapt", s.target_adapt)) if tval else
                                (("target-adapt-pool", s.target_adapt + s.target_val),) if variant == "v2" else ())
            forward = embed(*sets)
            extra = KERAS_TRIAL_S
        else:
            # head phase on features, then fine-tuning on images: every epoch's batches and a validation pass
            layers = trial.get("unfreeze_layers", t.unfreeze_last_layers)
            tval = trial.get("selection") == "target_val"
            val = s.target_val if tval else s.source_val
            forward = embed(*base_sets[:2], *((("target-val", s.target_val),) if tval else ()))
            batches = max(1, math.ceil(s.source_train / t.batch_size))
            epochs = trial.get("finetune_epochs", t.finetune_epochs)
            train = epochs * batches * t.batch_size
            forward += epochs * val + scored
            # the backward pass scales with the layers it goes through: measured for 40, taken as linear in them
            backward_s = max(1 / _rate(TRAIN40_IMG_S, t.input_size_px) - forward_s, 0.0) * layers / 40
            extra = KERAS_TRIAL_S + train * (forward_s + backward_s)
        out.append(TrialCost(trial["trial_id"], forward, train, forward * forward_s + extra))
    return out


def describe(cfg: Config, costs: list[TrialCost], sizes: SplitSizes) -> str:
    """One paragraph: the total in minutes (wall at the reference rates, and CPU-minutes) and what it assumes."""
    wall = sum(c.seconds for c in costs) / 60  # the machine's cores busy throughout, however trials share them
    where = ("on the crops prepare made" if not sizes.estimated else
             f"on ~{sizes.total} crops (the caps; prepare may keep fewer)")
    gpu = (" These trials ask for GPUs, for which no reference rate has been measured: the figures are their CPU time,"
           " an upper bound." if cfg.sweep.gpus_per_trial > 0 else "")
    return (f"estimated cost {where}: {wall * REFERENCE_CPUS:.0f} CPU-minutes, about {wall:.0f} minutes "
            f"on a {REFERENCE_CPUS}-core machine like the reference one (rates measured there at "
            f"{cfg.train.input_size_px} px; other machines scale every trial alike; prepare not included).{gpu}")
