"""Train-time augmentation: each transform changes what it should, and only with its probability."""

import numpy as np
import pytest
from scipy import stats as sps
from skimage import data as skdata

from dfsweep.config import TrainConfig
from dfsweep.trainables import augment

FACE = skdata.astronaut()[100:228, 150:278].copy()  # 128x128 RGB uint8


def _batch(n: int) -> np.ndarray:
    return np.repeat(FACE[None].astype(np.float32), n, axis=0)


def _hit_rate_ok(hits: int, n: int, p: float) -> bool:
    """Two-sided binomial test at 1e-4: the observed rate is compatible with p."""
    return sps.binomtest(hits, n, p).pvalue > 1e-4


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_flip_mirrors_exactly_and_with_its_probability(p):
    rng = np.random.default_rng(0)
    batch = _batch(400)
    out = augment.apply_flip(batch, augment.draw_flip(400, rng, p))
    flipped = np.array([np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch)])
    same = np.array([np.array_equal(o, b) for o, b in zip(out, batch)])
    assert np.all(flipped | same) and _hit_rate_ok(int(flipped.sum()), 400, p)
    assert np.array_equal(batch, _batch(400))  # the input is not modified in place


def test_brightness_scales_within_range_with_its_probability():
    rng = np.random.default_rng(1)
    batch = _batch(600) * 0.5  # room to brighten without clipping
    out = augment.apply_brightness(batch, augment.draw_brightness(600, rng, 0.3, 0.85, 1.15))
    ratio = (out.reshape(600, -1).sum(1) / batch.reshape(600, -1).sum(1))
    hit = ~np.isclose(ratio, 1.0)
    assert _hit_rate_ok(int(hit.sum()), 600, 0.3)
    assert ratio[hit].min() >= 0.85 - 1e-6 and ratio[hit].max() <= 1.15 + 1e-6
    np.testing.assert_allclose(out[~hit], batch[~hit])


def test_random_jpeg_and_blur_touch_only_their_share():
    rng = np.random.default_rng(2)
    batch = _batch(300)
    j = augment.apply_jpeg(batch, augment.draw_per_hit(300, rng, 0.25, lambda: int(rng.integers(20, 41))))
    changed = np.array([not np.array_equal(a, b) for a, b in zip(j, batch)])
    assert _hit_rate_ok(int(changed.sum()), 300, 0.25)
    b = augment.apply_blur(batch, augment.draw_per_hit(300, rng, 0.6, lambda: int(rng.choice((3, 5)))))
    changed = np.array([not np.array_equal(a, c) for a, c in zip(b, batch)])
    assert _hit_rate_ok(int(changed.sum()), 300, 0.6)


def test_presets():
    cfg = TrainConfig()
    rng = np.random.default_rng(3)
    batch = _batch(8)
    assert augment.augment(batch, rng, cfg, "none") is batch
    robust = augment.augment(batch, rng, TrainConfig(jpeg_prob=1.0, blur_prob=1.0, flip_prob=0.0, brightness_prob=0.0),
                             "robust")
    assert all(not np.array_equal(a, b) for a, b in zip(robust, batch))
    with pytest.raises(ValueError, match="valid: none, paper, robust"):
        augment.get_preset("heavy")


@pytest.mark.parametrize("name", sorted(augment.PRESETS))
def test_a_plan_applied_batch_by_batch_equals_the_whole_epoch_at_once(name):
    cfg = TrainConfig(flip_prob=0.5, brightness_prob=0.5, jpeg_prob=0.5, blur_prob=0.5)
    batch = _batch(24) * np.linspace(0.4, 1.0, 24, dtype=np.float32)[:, None, None, None]
    plan = augment.get_preset(name)(24, np.random.default_rng(5), cfg)
    whole = plan.apply(batch, 0)
    pieces = np.concatenate([plan.apply(batch[i:i + 8], i) for i in (0, 8, 16)])
    np.testing.assert_array_equal(pieces, whole)
    again = augment.get_preset(name)(24, np.random.default_rng(5), cfg).apply(batch, 0)
    np.testing.assert_array_equal(again, whole)  # the same seed draws the same plan
    if name != "none":
        assert not np.array_equal(whole, batch)


def test_cue_features_see_sharpness_and_intensity():
    from dfsweep.perturbations import blur
    from dfsweep.trainables.cue import cue_features

    sharp = FACE.astype(np.float32)
    soft = blur(FACE, 9).astype(np.float32)
    f = cue_features(np.stack([sharp, soft, sharp * 0.5]))
    np.testing.assert_allclose(f[:, :16].sum(1), 1.0)
    np.testing.assert_allclose(f[:, 16:].sum(1), 1.0)
    centre = (np.arange(16) + 0.5)
    assert (f[1, :16] * centre).sum() < (f[0, :16] * centre).sum()  # blur moves log|Laplacian| mass down
    assert (f[2, 16:] * centre).sum() < (f[0, 16:] * centre).sum()  # darker image: intensity mass moves down
