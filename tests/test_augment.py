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
    out = augment.hflip(batch, rng, p)
    flipped = np.array([np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch)])
    same = np.array([np.array_equal(o, b) for o, b in zip(out, batch)])
    assert np.all(flipped | same) and _hit_rate_ok(int(flipped.sum()), 400, p)
    assert np.array_equal(batch, _batch(400))  # the input is not modified in place


def test_brightness_scales_within_range_with_its_probability():
    rng = np.random.default_rng(1)
    batch = _batch(600) * 0.5  # room to brighten without clipping
    out = augment.brightness(batch, rng, 0.3, 0.85, 1.15)
    ratio = (out.reshape(600, -1).sum(1) / batch.reshape(600, -1).sum(1))
    hit = ~np.isclose(ratio, 1.0)
    assert _hit_rate_ok(int(hit.sum()), 600, 0.3)
    assert ratio[hit].min() >= 0.85 - 1e-6 and ratio[hit].max() <= 1.15 + 1e-6
    np.testing.assert_allclose(out[~hit], batch[~hit])


def test_random_jpeg_and_blur_touch_only_their_share():
    rng = np.random.default_rng(2)
    batch = _batch(300)
    j = augment.random_jpeg(batch, rng, 0.25, 20, 40)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(j, batch)])
    assert _hit_rate_ok(int(changed.sum()), 300, 0.25)
    b = augment.random_blur(batch, rng, 0.6, (3, 5))
    changed = np.array([not np.array_equal(a, c) for a, c in zip(b, batch)])
    assert _hit_rate_ok(int(changed.sum()), 300, 0.6)


def test_presets():
    cfg = TrainConfig()
    rng = np.random.default_rng(3)
    batch = _batch(8)
    assert augment.get_preset("none")(batch, rng, cfg) is batch
    robust = augment.get_preset("robust")(batch, rng, TrainConfig(jpeg_prob=1.0, blur_prob=1.0, flip_prob=0.0,
                                                                    brightness_prob=0.0))
    assert all(not np.array_equal(a, b) for a, b in zip(robust, batch))
    with pytest.raises(ValueError, match="valid: none, paper, robust"):
        augment.get_preset("heavy")


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
