"""The trainable without Tune: checkpoint/resume gives the uninterrupted result, the feature cache is shared,
degraded sets are made once and scored. Real Keras Xception at 71 px on real MTCNN crops of the tiny demo set."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dfsweep import schema
from dfsweep.config import TrainConfig

pytestmark = [pytest.mark.tf]


@pytest.fixture(scope="module")
def crops_run(tiny_crops):
    return tiny_crops


def _cfg(weights_file, **kw) -> TrainConfig:
    base = dict(input_size_px=71, weights=str(weights_file), head_epochs=2, finetune_epochs=2, batch_size=8,
                test_perturbations=dict(jpeg=(50,), blur=(5,), noise=()))
    return TrainConfig(**(base | kw))


class Killed(Exception):
    pass


def _run(run, cfg, spec, *, kill_after=None, restored=None, out=None):
    """run_trial with an in-memory checkpoint store; `kill_after` epochs: raise right after that checkpoint."""
    from dfsweep.trainables.train import run_trial

    store = {}

    def save(metrics, payload):
        store["payload"] = payload
        if kill_after is not None and payload["state"]["epoch"] == kill_after:
            raise Killed

    target = out or run
    if out is not None and not (out.crops.exists()):
        shutil.copytree(run.crops, out.crops)
    try:
        table = run_trial(spec, str(target.root), cfg, cpus=2, checkpoint=(save, restored))
    except Killed:
        return None, store["payload"]
    return table.sort_by([("perturbation", "ascending"), ("level", "ascending"), ("domain", "ascending"),
                          ("split", "ascending"), ("sample_id", "ascending")]), store.get("payload")


_UNDISTURBED: dict = {}
# V2 with the paper's fine-tuning (robust augmentation), and the arm that fine-tunes the head alone on cached features
# (0 layers unfrozen, no augmentation) with half of each batch from target adapt, selecting on target val.
SPECS = {"v2-robust": dict(variant="v2", augmentation="robust", seed=3),
         "v2-head-tval": dict(variant="v2", arm="none-u0-a50-tval", augmentation="none", unfreeze_layers=0,
                              adapt_share=0.5, selection="target_val", seed=3)}


# Every epoch of both phases (head_epochs=2, finetune_epochs=2): inside the head phase, right at the phase boundary
# (the last head epoch), inside fine-tuning, and after the last epoch (only scoring left).
@pytest.mark.parametrize("arm, kill_after", [("v2-robust", 1), ("v2-robust", 2), ("v2-robust", 3), ("v2-robust", 4),
                                             ("v2-head-tval", 2), ("v2-head-tval", 3)])
def test_v2_killed_mid_run_resumes_to_the_same_scores(crops_run, weights_file, tmp_path_factory, tmp_path, arm,
                                                      kill_after):
    cfg = _cfg(weights_file)
    spec = SPECS[arm]
    if arm not in _UNDISTURBED:  # one undisturbed run serves every kill point
        _UNDISTURBED[arm], _ = _run(crops_run, cfg, spec, out=schema.RunDir(tmp_path_factory.mktemp("whole")))
    whole = _UNDISTURBED[arm]
    part, payload = _run(crops_run, cfg, spec, kill_after=kill_after, out=schema.RunDir(tmp_path / "killed"))
    assert part is None and payload["state"]["epoch"] == kill_after
    resumed, _ = _run(crops_run, cfg, spec, restored=payload, out=schema.RunDir(tmp_path / "killed"))
    assert resumed.column("sample_id").equals(whole.column("sample_id"))
    np.testing.assert_array_equal(resumed.column("score").to_numpy(), whole.column("score").to_numpy())


def test_scores_cover_clean_and_degraded_test_sets(crops_run, weights_file, tmp_path):
    cfg = _cfg(weights_file)
    table, _ = _run(crops_run, cfg, dict(variant="v1", augmentation="none", seed=1), out=schema.RunDir(tmp_path / "r"))
    combos = set(zip(*(table.column(c).to_pylist() for c in ("domain", "split", "perturbation", "level"))))
    assert combos == {("source", "val", "none", 0), ("source", "test", "none", 0), ("target", "test", "none", 0),
                      ("source", "test", "jpeg", 50), ("target", "test", "jpeg", 50),
                      ("source", "test", "blur", 5), ("target", "test", "blur", 5)}
    clean = table.filter(pa.compute.equal(table.column("perturbation"), "none"))
    for pert in ("jpeg", "blur"):
        sub = table.filter(pa.compute.equal(table.column("perturbation"), pert))
        ids = lambda t, d: sorted(x for x, dd, s in zip(t.column("sample_id").to_pylist(), t.column("domain").to_pylist(),  # noqa: E731
                                                         t.column("split").to_pylist()) if dd == d and s == "test")
        assert ids(sub, "target") == ids(clean, "target") and ids(sub, "source") == ids(clean, "source")
    schema.validate_table(table, schema.SCORES, "scores")


def test_test_sets_are_degraded_on_the_fly_and_nothing_is_stored(crops_run, weights_file, tmp_path):
    from dfsweep.crops import CropStore
    from dfsweep.perturbations import PERTURBATIONS
    from dfsweep.trainables.data import index_crops, load_split

    store = CropStore.of_run(crops_run)
    test = load_split(index_crops(store), store, "target", "test", 71)
    idx = np.arange(min(6, len(test)))
    clean = test.batch(idx)
    for name, p in PERTURBATIONS.items():
        level = p.default_levels[-1]
        degraded = test.degraded(name, level)
        want = np.stack([p.apply(img.astype(np.uint8), level) for img in clean]).astype(np.float32)
        np.testing.assert_array_equal(degraded.batch(idx), want)
        np.testing.assert_array_equal(degraded.batch(idx[::-1]), want[::-1])  # per sample, whatever the batch
    out = schema.RunDir(tmp_path / "r")
    _run(crops_run, _cfg(weights_file), dict(variant="cue", augmentation="none", seed=1), out=out)
    assert sorted(p.name for p in Path(out.root).iterdir()) == ["crops", "scores"]  # no degraded copies on disk


def test_v1_seeds_share_one_feature_cache(crops_run, weights_file, tmp_path):
    out = schema.RunDir(tmp_path / "cache")
    cfg = _cfg(weights_file, test_perturbations=dict(jpeg=(), blur=(), noise=()))
    _run(crops_run, cfg, dict(variant="v1", augmentation="none", seed=1), out=out)
    files = sorted(Path(out.features).rglob("*.npy"))
    assert {f.stem for f in files} == {"source-train", "source-val", "source-test", "target-test"}
    assert len(list(Path(out.features).rglob("*.ids.parquet"))) == 4
    stamps = {f: f.stat().st_mtime_ns for f in files}
    _run(crops_run, cfg, dict(variant="v1", augmentation="none", seed=2), out=out)
    assert {f: f.stat().st_mtime_ns for f in sorted(Path(out.features).rglob("*.npy"))} == stamps  # read, not rewritten


@pytest.mark.parametrize("name", sorted(__import__("dfsweep.trainables.variants", fromlist=["VARIANTS"]).VARIANTS))
def test_every_variant_scores_under_the_same_contract_with_its_role(crops_run, weights_file, tmp_path, name):
    from dfsweep.trainables.variants import get_variant

    variant = get_variant(name)
    assert variant.role in schema.ROLES
    cfg = _cfg(weights_file, head_epochs=1, finetune_epochs=1, test_perturbations=dict(jpeg=(50,), blur=(), noise=()))
    out = schema.RunDir(tmp_path / name)
    table, _ = _run(crops_run, cfg, dict(variant=name, augmentation="paper" if variant.arms else "none",
                                         seed=1), out=out)
    schema.validate_table(table, schema.SCORES, name)
    assert set(table.column("role").to_pylist()) == {variant.role}
    assert set(table.column("perturbation").to_pylist()) == {"none", "jpeg"}
    s = table.column("score").to_numpy()
    assert np.all((s >= 0) & (s <= 1)) and np.isfinite(s).all()
    assert (out.models / f"{table.column('trial_id')[0].as_py()}.keras").exists() == variant.keras


@pytest.mark.parametrize("selection", ["target_val", "source_val"])
def test_an_arm_selects_on_its_split_and_adapts_on_the_rest_of_the_pool(crops_run, weights_file, tmp_path, selection):
    """Head-only fine-tuning without augmentation runs on the cached features; selecting on target val it adapts on
    target adapt alone and chooses its epoch there, selecting on source val it adapts on the whole pool (adapt + val).
    The exported model (pixels in, the real backbone) gives the scores the features path wrote."""
    import json

    import keras
    from sklearn.metrics import roc_auc_score

    from dfsweep.crops import CropStore
    from dfsweep.trainables.data import index_crops, load_split
    from dfsweep.trainables.train import run_trial

    cfg = _cfg(weights_file, finetune_epochs=3, finetune_lr=1e-3, test_perturbations=dict(jpeg=(), blur=(), noise=()))
    arm = "none-u0-a50" + ("-tval" if selection == "target_val" else "")
    spec = dict(variant="v2", arm=arm, augmentation="none", unfreeze_layers=0, adapt_share=0.5, selection=selection,
                seed=1)
    out = schema.RunDir(tmp_path / "r")
    shutil.copytree(crops_run.crops, out.crops)
    metrics: list[dict] = []
    table = run_trial(spec, str(out.root), cfg, cpus=2, report=metrics.append)
    tid = f"v2-{arm}-s1"
    assert set(table.column("trial_id").to_pylist()) == {tid} and set(table.column("arm").to_pylist()) == {arm}
    sets = {f.stem for f in Path(out.features).rglob("*.npy")}
    if selection == "target_val":
        assert {"target-val", "target-adapt"} <= sets and "target-adapt-pool" not in sets
    else:
        assert "target-adapt-pool" in sets and not {"target-val", "target-adapt"} & sets
    finetune = [m for m in metrics if m.get("phase") == "finetune"]
    assert len(finetune) == 3
    card = json.loads((out.models / f"{tid}.json").read_text())
    assert (card["arm"], card["unfreeze_layers"], card["adapt_share"], card["selection"]) == (arm, 0, 0.5, selection)
    chosen = next(m for m in finetune if f"finetune/{finetune.index(m) + 1}" == card["chosen_epoch"])
    assert card["selection_auc"] == pytest.approx(chosen["val_auc"])
    rows = table.filter(pa.compute.and_(pa.compute.equal(table.column("split"), "val"),
                                        pa.compute.equal(table.column("domain"), "source")))
    assert card["source_val_auc"] == pytest.approx(roc_auc_score(rows.column("label").to_numpy(),
                                                                 rows.column("score").to_numpy()))
    store = CropStore.of_run(out)
    test = load_split(index_crops(store), store, "target", "test", 71)
    model = keras.saving.load_model(str(out.models / f"{tid}.keras"), compile=False)
    want = np.asarray(model.predict_on_batch(test.batch(np.arange(len(test))))).ravel()
    got = table.filter(pa.compute.and_(pa.compute.equal(table.column("split"), "test"),
                                       pa.compute.equal(table.column("domain"), "target"))).sort_by("sample_id")
    np.testing.assert_allclose(got.column("score").to_numpy(), want, atol=1e-5)


def test_variants_registry_has_one_baseline_and_lists_the_valid_names():
    from dfsweep.trainables.variants import VARIANTS, get_variant

    assert [n for n, v in VARIANTS.items() if v.role == "baseline"] == ["v1"]
    with pytest.raises(ValueError, match="valid: " + ", ".join(VARIANTS)):
        get_variant("v9")


def test_a_streamed_epoch_trains_exactly_like_an_in_memory_array():
    """Keras compiles a different step for a batch dimension it does not know (other convolution kernels, other
    rounding): the stream's batches carry a static shape, so fit gives the in-memory fit's weights to the bit."""
    import keras
    import tensorflow as tf

    from dfsweep.trainables.data import batch_dataset

    def model():
        keras.utils.set_random_seed(1)
        tf.config.experimental.enable_op_determinism()
        m = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.SeparableConv2D(8, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dropout(0.5), keras.layers.Dense(1, activation="sigmoid")])
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
        return m

    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (64, 32, 32, 3)).astype(np.float32), (rng.random(64) < 0.5).astype(np.float32)
    in_memory, streamed = model(), model()
    in_memory.fit(x, y, batch_size=8, shuffle=False, epochs=1, verbose=0)
    loaded = []
    streamed.fit(batch_dataset(8, lambda b: (loaded.append(b) or x[b * 8:(b + 1) * 8], y[b * 8:(b + 1) * 8]),
                               (8, 32, 32, 3), workers=2), epochs=1, verbose=0)
    assert sorted(loaded) == list(range(8))
    for a, b in zip(in_memory.get_weights(), streamed.get_weights()):
        np.testing.assert_array_equal(a, b)
