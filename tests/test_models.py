"""Keras Xception + head: what V1 and V2 train, the last-40 boundary, offline weights, the input contract."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dfsweep.trainables.models import (WeightsError, build_detector, freeze_backbone, load_backbone_weights,  # noqa: E402
                                       trainable_weight_count, unfreeze_last)

HEAD_WEIGHTS = 2048 * 256 + 256 + 256 * 1 + 1  # Dense 256 + Dense 1


@pytest.fixture(scope="module")
def det():
    return build_detector(71, "xception", "none")


def test_v1_trains_the_head_only(det):
    freeze_backbone(det)
    assert trainable_weight_count(det.model) == HEAD_WEIGHTS
    assert [layer.name for layer in det.head.layers] == ["head_dense", "head_dropout", "head_out"]
    assert det.head.layers[1].rate == 0.5 and det.head.layers[0].units == 256


def test_v2_unfreezes_from_block10_sepconv3_with_batchnorm_frozen(det):
    assert len(det.base.layers) == 133
    first = unfreeze_last(det, 40)
    assert first == "block10_sepconv3" and det.base.layers[93].name == "block10_sepconv3"
    tail = det.base.layers[93:]
    assert all(layer.trainable for layer in tail if not isinstance(layer, keras.layers.BatchNormalization))
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in tail) == 12
    assert not any(layer.trainable for layer in tail if isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable for layer in det.base.layers[:93])
    expected = HEAD_WEIGHTS + sum(int(np.prod(w.shape)) for layer in tail
                                  if not isinstance(layer, keras.layers.BatchNormalization) for w in layer.trainable_weights)
    assert trainable_weight_count(det.model) == expected > HEAD_WEIGHTS
    freeze_backbone(det)
    assert trainable_weight_count(det.model) == HEAD_WEIGHTS


@pytest.mark.parametrize("pixel_range, lo, hi", [("xception", -1.0, 1.0), ("unit", 0.0, 1.0)])
def test_pixel_range_is_inside_the_model(pixel_range, lo, hi):
    d = build_detector(71, pixel_range, "none")
    scale = d.backbone.get_layer(f"to_{pixel_range}_range")
    out = np.asarray(scale(np.array([[[[0.0, 127.5, 255.0]]]], np.float32)))
    assert out.ravel().tolist() == pytest.approx([lo, (lo + hi) / 2, hi])


def test_offline_imagenet_weights_load_by_name(weights_file):
    d = build_detector(71, "xception", str(weights_file))
    conv = d.base.get_layer("block1_conv1").get_weights()[0]
    fresh = build_detector(71, "xception", "none").base.get_layer("block1_conv1").get_weights()[0]
    assert conv.shape == fresh.shape and not np.allclose(conv, fresh)
    # The same weights reach a different input size: Xception's weights do not depend on it.
    d2 = build_detector(96, "xception", str(weights_file))
    np.testing.assert_array_equal(d2.base.get_layer("block14_sepconv2").get_weights()[0],
                                  d.base.get_layer("block14_sepconv2").get_weights()[0])


def test_bad_weights_are_clear_errors(tmp_path, det):
    with pytest.raises(WeightsError, match="not found"):
        load_backbone_weights(det.base, tmp_path / "nope.keras")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="block1_conv1")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(WeightsError, match="lacks"):
        load_backbone_weights(det.base, tmp_path / "other.keras")
