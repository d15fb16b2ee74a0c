"""The test-time perturbations registry: every entry is checked by the same tests (a new one needs no new test code)."""

import warnings

import numpy as np
import pytest
from skimage import data as skdata

from dfsweep import perturbations
from dfsweep.config import ConfigError, TrainConfig, config_from_dict
from dfsweep.perturbations import PERTURBATIONS

FACE = skdata.astronaut()[100:228, 150:278].copy()  # 128x128 RGB uint8
KINDS = sorted(PERTURBATIONS)


def _damage(img: np.ndarray) -> float:
    return float(np.abs(img.astype(int) - FACE).mean())


@pytest.mark.parametrize("kind", KINDS)
def test_each_perturbation_keeps_the_image_contract_and_is_deterministic(kind):
    p = PERTURBATIONS[kind]
    for level in p.default_levels:
        out = p.apply(FACE, level)
        assert out.shape == FACE.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, p.apply(FACE.copy(), level))  # same image, same level: same pixels
        assert _damage(out) > 0  # every default level changes the image


@pytest.mark.parametrize("kind", KINDS)
def test_harsher_levels_do_more_damage(kind):
    p = PERTURBATIONS[kind]
    assert p.harsher in ("lower", "higher")
    levels = sorted(p.default_levels, key=p.severity)  # mild -> harsh, as the entry says
    assert levels == sorted(p.default_levels, reverse=p.harsher == "lower")
    damage = [_damage(p.apply(FACE, lv)) for lv in levels]
    assert damage == sorted(damage) and damage[0] < damage[-1]


@pytest.mark.parametrize("kind", KINDS)
def test_config_takes_each_kind_with_its_defaults_and_refuses_bad_levels(kind):
    p = PERTURBATIONS[kind]
    assert TrainConfig().test_perturbations[kind] == p.default_levels and all(p.valid(v) for v in p.default_levels)
    off = config_from_dict({"train": {"test_perturbations": {kind: []}}}).train
    assert off.test_perturbations[kind] == () and all(pert != kind for pert, _ in off.perturbation_levels())
    others = {k for k in PERTURBATIONS if k != kind}
    assert {pert for pert, _ in off.perturbation_levels()} == {k for k in others if PERTURBATIONS[k].default_levels}
    bad = next(v for v in (0, -1, 4, 256, 101) if not p.valid(v))
    with pytest.raises(ConfigError, match=f"test_perturbations.{kind} must hold"):
        config_from_dict({"train": {"test_perturbations": {kind: [bad]}}})
    assert p.axis_label.startswith(p.quantity) and f"({p.harsher} is harsher)" in p.axis_label


def test_unknown_perturbation_is_refused_with_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: " + ", ".join(PERTURBATIONS)):
        config_from_dict({"train": {"test_perturbations": {"fog": [1]}}})
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        perturbations.get_perturbation("fog")


def test_old_keys_are_read_with_a_deprecation_message():
    with pytest.warns(FutureWarning, match="test_jpeg_qualities is deprecated"):
        cfg = config_from_dict({"train": {"test_jpeg_qualities": [80, 40], "test_blur_kernels_px": []}}).train
    assert cfg.test_perturbations["jpeg"] == (80, 40) and cfg.test_perturbations["blur"] == ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="both given"):
            config_from_dict({"train": {"test_jpeg_qualities": [80], "test_perturbations": {"jpeg": [40]}}})


def test_jpeg_quality_orders_the_damage_and_blur_removes_detail():
    err = [np.abs(perturbations.jpeg(FACE, q).astype(int) - FACE).mean() for q in (95, 60, 20)]
    assert err[0] < err[1] < err[2]
    lap = lambda im: np.abs(np.diff(im.astype(int), axis=0)).mean()  # noqa: E731
    assert lap(FACE) > lap(perturbations.blur(FACE, 3)) > lap(perturbations.blur(FACE, 9))
    assert perturbations.blur(FACE, 5).shape == FACE.shape and perturbations.jpeg(FACE, 50).dtype == np.uint8
    with pytest.raises(ValueError, match="odd"):
        perturbations.blur(FACE, 4)


def test_noise_has_the_stated_sigma_and_differs_between_images():
    grey = np.full((200, 200, 3), 128, np.uint8)  # far from 0 and 255: no clipping at sigma 10
    diff = perturbations.noise(grey, 10).astype(float) - 128
    assert abs(diff.mean()) < 0.2 and abs(diff.std() - 10) < 0.2
    other = grey.copy()
    other[0, 0, 0] = 127
    assert not np.array_equal(perturbations.noise(grey, 10)[1:], perturbations.noise(other, 10)[1:])


def test_order_key_puts_clean_first_then_registry_order_mild_to_harsh():
    rows = [("blur", 9), ("none", 0), ("jpeg", 20), ("noise", 5), ("jpeg", 95), ("blur", 3), ("mystery", 1)]
    assert sorted(rows, key=lambda r: perturbations.order_key(*r)) == [
        ("none", 0), ("jpeg", 95), ("jpeg", 20), ("blur", 3), ("blur", 9), ("noise", 5), ("mystery", 1)]
