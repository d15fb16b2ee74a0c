"""Memory does not grow with the dataset: one trial in a subprocess at N and at 4N source-train crops (128 px), its
peak RSS (ru_maxrss of the child) measured, not capped. Whole-split loading (float32 arrays of every split, an
epoch-sized training array and its augmented copies) grows by hundreds of MiB between the two; streaming does not."""

import json
import subprocess
import sys

import pytest

from dfsweep import crops, schema

pytestmark = [pytest.mark.tf, pytest.mark.slow]

# Growth allowed between N and 4N. Per-sample ids, labels, locations and scores are ~0.3 KB a crop (under 1 MiB for
# the 3N extra crops here); the rest is allocator noise. Whole-split loading needs 3N x 196 KB = 170+ MiB for the
# train split's float32 array alone at 128 px, and several epoch-sized copies more during fine-tuning.
MARGIN_MIB = 60
TRIAL = """
import json, resource, sys
import torchvision  # noqa: F401 (imported before TensorFlow, see ENVIRONMENT.md)
from dfsweep.config import TrainConfig
from dfsweep.trainables.train import run_trial
cfg = TrainConfig(input_size_px=128, weights=sys.argv[2], head_epochs=1, finetune_epochs=1, batch_size=16,
                  adapt_share=0.25, export_model=False, test_perturbations=dict(jpeg=(), blur=(), noise=(40,)))
table = run_trial(dict(variant="v2", augmentation="robust", seed=1), sys.argv[1], cfg, cpus=2, feature_cache=False)
print(json.dumps(dict(rows=table.num_rows, peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def _peak(run: schema.RunDir, weights) -> dict:
    proc = subprocess.run([sys.executable, "-c", TRIAL, str(run.root), str(weights)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_trial_peak_memory_is_flat_in_the_number_of_crops(scaled_source, weights_file, tmp_path):
    base, n_train = scaled_source
    small, large = schema.RunDir(tmp_path / "n"), schema.RunDir(tmp_path / "4n")
    copies = max(1, -(-200 // n_train))  # N >= 200 source-train crops
    crops.scale_crops(base, small, copies, splits=[("source", "train")])
    crops.scale_crops(base, large, 4 * copies, splits=[("source", "train")])
    a, b = _peak(small, weights_file), _peak(large, weights_file)
    assert b["rows"] == a["rows"]  # the scored sets (val, test, degraded test) are the same size in both
    growth = b["peak_mib"] - a["peak_mib"]
    print(f"peak RSS: {a['peak_mib']:.0f} MiB at N={copies * n_train}, {b['peak_mib']:.0f} MiB at 4N "
          f"({growth:+.0f} MiB)")
    assert growth < MARGIN_MIB, f"peak RSS grew by {growth:.0f} MiB from N to 4N crops (allowed {MARGIN_MIB})"
