"""Keras Xception + the paper's head, the input contract that travels with it, and what V1/V2 unfreeze.

The detector takes RGB pixels in [0, 255] at `input_size_px` and maps them to the backbone's range inside the
model (so an exported model carries its own preprocessing): Xception's own [-1, 1] or the paper's [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

RESCALE = {"xception": dict(scale=1 / 127.5, offset=-1.0), "unit": dict(scale=1 / 255.0, offset=0.0)}


class WeightsError(ValueError):
    """Backbone weights that cannot be used, with the reason."""


@dataclass
class Detector:
    """`model` = `head(backbone(pixels))`; `base` is the Keras Xception inside `backbone` whose layers V2 unfreezes."""

    model: keras.Model
    backbone: keras.Model  # pixels -> 2048 pooled features
    base: keras.Model
    head: keras.Model  # 2048 features -> probability of fake


def _weighted_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every layer with weights in `model` and its nested models, by name."""
    found: dict[str, keras.layers.Layer] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_weighted_layers(layer))
        elif layer.weights:
            found[layer.name] = layer
    return found


def load_backbone_weights(base: keras.Model, path: str | Path) -> None:
    """Fill `base` from a Keras file: a `.weights.h5` of Xception itself, or any model whose layers match by name."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"backbone weights file not found: {path}")
    if path.name.endswith(".weights.h5"):
        base.load_weights(str(path))
        return
    try:
        source = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file; all mean "cannot use this file"
        raise WeightsError(f"cannot load {path} as a Keras model: {exc}") from exc
    donors = _weighted_layers(source)
    targets = _weighted_layers(base)
    missing = sorted(set(targets) - set(donors))
    if missing:
        raise WeightsError(f"{path} lacks {len(missing)} of Xception's {len(targets)} weighted layers, e.g. {missing[:5]}")
    for name, layer in targets.items():
        try:
            layer.set_weights(donors[name].get_weights())
        except ValueError as exc:
            raise WeightsError(f"{path}: layer {name!r} does not fit Xception's: {exc}") from exc


def build_detector(input_size_px: int, pixel_range: str, weights: str, dense_units: int = 256,
                   dropout: float = 0.5) -> Detector:
    """Xception (global average pool, 2048) -> Dense(dense_units, relu) -> Dropout -> Dense(1, sigmoid)."""
    shape = (input_size_px, input_size_px, 3)
    if weights == "imagenet":
        try:
            base = keras.applications.Xception(weights="imagenet", include_top=False, pooling="avg", input_shape=shape)
        except Exception as exc:  # offline, Keras raises a bare Exception("URL fetch failure ...")
            raise WeightsError(f"cannot download ImageNet Xception weights ({exc}); pass a local file as train.weights") from exc
    else:
        base = keras.applications.Xception(weights=None, include_top=False, pooling="avg", input_shape=shape)
        if weights != "none":
            load_backbone_weights(base, weights)
    pixels = keras.Input(shape, name="pixels")
    x = keras.layers.Rescaling(**RESCALE[pixel_range], name=f"to_{pixel_range}_range")(pixels)
    backbone = keras.Model(pixels, base(x), name="backbone")
    head = keras.Sequential([
        keras.Input((base.output_shape[-1],), name="features"),
        keras.layers.Dense(dense_units, activation="relu", name="head_dense"),
        keras.layers.Dropout(dropout, name="head_dropout"),
        keras.layers.Dense(1, activation="sigmoid", name="head_out", dtype="float32"),  # float32 under mixed precision
    ], name="head")
    model = keras.Model(pixels, head(backbone(pixels)), name="detector")
    return Detector(model=model, backbone=backbone, base=base, head=head)


def freeze_backbone(det: Detector) -> None:
    """V1, and V2's head phase: only the head trains."""
    det.base.trainable = False


def unfreeze_last(det: Detector, n_layers: int, train_batchnorm: bool = False) -> str | None:
    """V2's fine-tuning: the last `n_layers` of Keras' Xception train; returns the first unfrozen layer's name.

    BatchNormalization layers stay frozen (and so in inference mode) unless `train_batchnorm`: with small
    fine-tuning batches their running statistics would otherwise drift away from ImageNet's.
    """
    layers = det.base.layers
    start = max(0, len(layers) - n_layers)
    det.base.trainable = True
    for i, layer in enumerate(layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and (train_batchnorm or not is_bn)
    return layers[start].name if n_layers else None


def trainable_weight_count(model: keras.Model) -> int:
    return int(sum(w.numpy().size for w in model.trainable_weights))
