"""The whole flow on a tiny demo set, through the CLI, on a real local Ray: prepare -> Tune sweep -> report.

Real components at small sizes: MTCNN actors in Ray Data, Keras Xception (71 px, ImageNet weights) trials in
Ray Tune, Parquet written and read back against the schemas, statistics from the stored scores alone.
"""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from dfsweep import schema
from dfsweep.cli import app

pytestmark = [pytest.mark.ray, pytest.mark.tf, pytest.mark.slow]


@pytest.fixture(scope="module")
def flow(tmp_path_factory, tiny_demo, weights_file, ray_session):
    demo, bad = tiny_demo
    root = tmp_path_factory.mktemp("flow")
    cfg = {
        "prepare": {"source": str(demo / "source"), "target": str(demo / "target"), "crop_size_px": 80,
                    "min_face_px": 40, "face_workers": 2},
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 2, "finetune_epochs": 1,
                  "batch_size": 8, "test_perturbations": {"jpeg": [40], "blur": [5], "noise": [10]}},
        "sweep": {"seeds": [5], "cpus_per_trial": 1},
        "report": {"bootstrap_samples": 200},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = root / "run"
    result = CliRunner().invoke(app, ["run", str(run_dir), "--config", str(root / "tiny.yaml")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return schema.RunDir(run_dir), bad, result.output


def test_every_input_file_is_accounted_for(flow, tiny_demo):
    run, bad, output = flow
    demo, _ = tiny_demo
    manifest = pq.read_table(run.manifest)
    schema.validate_table(manifest, schema.MANIFEST, "manifest")
    inputs = [os.fsencode(os.path.join(dp, n)).decode("utf-8", "backslashreplace")
              for d in ("source", "target") for c in ("real", "fake") for dp, dirs, files in os.walk(demo / d / c)
              for n in files + [x for x in dirs if os.path.islink(os.path.join(dp, x))]]
    assert sorted(manifest.column("path").to_pylist()) == sorted(inputs)
    # Keyed by the path under the demo root: the demo reuses file names in real/ and fake/.
    rows = {os.path.relpath(r["path"], demo): r for r in manifest.to_pylist()}
    assert len(rows) == manifest.num_rows
    planted = {f"source/fake/bad/{name}": status for name, status in bad.items()}
    for path, status in planted.items():
        assert rows[path]["status"] == status and rows[path]["reason"], rows[path]
    assert [p for p, r in rows.items() if p not in planted and r["status"] != "ok"] == []
    assert f"inputs {len(inputs)} = crops {len(inputs) - len(bad)}" in output and "adds up" in output


def test_console_before_the_report_is_one_line_per_event_without_rays_output(flow):
    """Not on a terminal (CliRunner, like CI or `| tee`): dfsweep's own lines, one line per trial event and a
    progress line at most every 30 s, then the report; Ray's, Ray Data's and Tune's output is in the run's log file."""
    import re

    run, _, output = flow
    closing = re.search(r"^sweep-001: 3/3 trials done; elapsed (\d+):(\d\d)$", output, re.M)
    assert closing, output[:5000]
    head = output[:closing.end()].splitlines()
    sweep_s = 60 * int(closing.group(1)) + int(closing.group(2))
    faces = re.search(r"^faces: (\d+)/\1 detected in (\d+):(\d\d)$", output, re.M)
    assert faces, output[:5000]
    detect_s = 60 * int(faces.group(2)) + int(faces.group(3))
    sweep_lines = [ln for ln in head[:-1] if ln.startswith("sweep-001: ")]
    face_lines = [ln for ln in head if re.match(r"faces: \d+/\d+ detected \(", ln)]
    assert len(sweep_lines) <= sweep_s // 30 and len(face_lines) <= detect_s // 30 + 1, head
    events = [ln for ln in head if ln not in sweep_lines and ln not in face_lines]
    for tid in ("v1-none-s5", "v2-paper-s5", "cue-none-s5"):
        mine = [ln for ln in events if ln.startswith(tid)]
        assert mine[0] == f"{tid} started" and mine[-1].startswith(f"{tid} done in "), events
        assert 2 <= len(mine) <= 4, mine  # started, a line per phase (head, finetune, cue), done
    assert "v2-paper-s5: head (epoch 1/3)" in events and "v2-paper-s5: finetune (epoch 3/3)" in events
    assert len(events) <= 26, "\n".join(events)  # 3 trials' events and dfsweep's own lines
    noise = re.compile(r"WARNING|INFO|Trial status|Configuration for experiment|snapshotting|logging_progress|╭|╰")
    assert not [ln for ln in head if noise.search(ln)], head
    log = re.search(r"^log: (\S+\.log) ", output, re.M)
    assert log and f"run directory: {run.root}" in output, output[:2000]
    text = open(log.group(1)).read()
    assert "Starting execution of Dataset" in text and "result files and experiment state" in text, text[:2000]


def test_crops_parquet_reads_back_against_the_schema(flow):
    run, _, _ = flow
    crops = schema.validate_table(pq.read_table(run.crops), schema.CROPS, "crops")
    manifest = pq.read_table(run.manifest).to_pylist()
    ok = {r["sample_id"]: r for r in manifest if r["status"] == "ok"}
    assert sorted(crops.column("sample_id").to_pylist()) == sorted(ok)
    from dfsweep.crops import decode_png_rgb

    for row in crops.slice(0, 5).to_pylist():
        assert decode_png_rgb(row["image"]).shape == (80, 80, 3)
        assert row["face_prob"] >= 0.9 and row["split"] == ok[row["sample_id"]]["split"]


def test_sweep_writes_one_score_file_per_trial(flow):
    run, _, _ = flow
    files = sorted(p.name for p in run.scores.glob("*.parquet"))
    assert files == ["cue-none-s5.parquet", "v1-none-s5.parquet", "v2-paper-s5.parquet"]
    tables = {f: schema.validate_table(pq.read_table(run.scores / f), schema.SCORES, f) for f in files}
    crops = pq.read_table(run.crops, columns=["sample_id", "domain", "split"]).to_pylist()
    expected = sorted(r["sample_id"] for r in crops if (r["domain"], r["split"]) in
                      {("source", "val"), ("source", "test"), ("target", "test")})
    test_ids = sorted(r["sample_id"] for r in crops if r["split"] == "test")
    for t in tables.values():
        clean = t.filter(pc.equal(t.column("perturbation"), "none"))
        assert sorted(clean.column("sample_id").to_pylist()) == expected  # V1 and V2 pair on the same samples
        for pert, level in (("jpeg", 40), ("blur", 5), ("noise", 10)):
            sub = t.filter(pc.and_(pc.equal(t.column("perturbation"), pert), pc.equal(t.column("level"), level)))
            assert sorted(sub.column("sample_id").to_pylist()) == test_ids  # every test sample, degraded
        s = t.column("score").to_numpy()
        assert np.all((s >= 0) & (s <= 1))
        assert set(t.column("split").to_pylist()) == {"val", "test"} and "adapt" not in t.column("split").to_pylist()
    roles = {f: set(t.column("role").to_pylist()) for f, t in tables.items()}
    assert roles == {"cue-none-s5.parquet": {"diagnostic"}, "v1-none-s5.parquet": {"baseline"},
                     "v2-paper-s5.parquet": {"candidate"}}  # every row says what its variant is for
    assert not (Path(run.root) / "degraded").exists()  # test sets are degraded on the fly, never stored


def test_trials_report_per_epoch_metrics_to_tune(flow):
    run, _, _ = flow
    results = sorted(run.tune.glob("sweep-*/*/result.json"))
    assert len(results) == 3
    for path in results:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        epochs = [r for r in rows if r["phase"] != "done"]
        assert len(epochs) >= 2 and all("val_auc" in r for r in epochs)
        assert list(path.parent.glob("events.out.tfevents.*"))  # TensorBoard logs beside Tune's results


def test_report_is_rebuilt_identically_from_scores_alone(flow):
    run, _, output = flow
    first = json.loads(run.summary.read_text())
    assert {t["trial_id"] for t in first["trials"]} == {"v1-none-s5", "v2-paper-s5", "cue-none-s5"}
    assert {a["domain"] for a in first["aggregate"]} == {"source", "target"}
    assert "fewer than 3" in " ".join(first["warnings"])  # one seed only, and the report says so
    result = CliRunner().invoke(app, ["report", str(run.root)])
    assert result.exit_code == 0, result.output
    assert json.loads(run.summary.read_text()) == first
    assert "Per trial" in output and "paired t-test" in output


def test_rerun_resumes_without_redoing_anything(flow):
    run, _, _ = flow
    before = {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet")}
    result = CliRunner().invoke(app, ["run", str(run.root)])
    assert result.exit_code == 0, result.output
    assert "crops already complete" in result.output and "all 3 trials already have scores" in result.output
    assert {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet")} == before


def test_same_seed_gives_the_same_scores_on_cpu(flow, tmp_path):
    import shutil

    from dfsweep.config import load_config
    from dfsweep.trainables.train import run_trial

    run, _, _ = flow
    copy = tmp_path / "copy"
    shutil.copytree(run.crops, copy / "crops")
    cfg = load_config(run.config)
    spec = dict(variant="v1", augmentation="none", seed=5)
    again = run_trial(spec, str(copy), cfg.train, cpus=1)
    original = pq.read_table(run.score_file("v1-none-s5")).sort_by([("split", "ascending"), ("sample_id", "ascending")])
    again = again.sort_by([("split", "ascending"), ("sample_id", "ascending")])
    keys = [("perturbation", "ascending"), ("level", "ascending"), ("domain", "ascending"), ("split", "ascending"),
            ("sample_id", "ascending")]
    original, again = original.sort_by(keys), again.sort_by(keys)
    assert again.column("sample_id").equals(original.column("sample_id"))
    np.testing.assert_array_equal(again.column("score").to_numpy(), original.column("score").to_numpy())


def test_each_trial_exports_its_selected_model(flow):
    run, _, _ = flow
    assert not (run.models / "cue-none-s5.keras").exists()  # the cue is no Keras model
    for tid in ("v1-none-s5", "v2-paper-s5"):
        meta = json.loads((run.models / f"{tid}.json").read_text())
        assert Path(run.models / f"{tid}.keras").stat().st_size > 1e7
        assert meta["input_size_px"] == 71 and meta["pixel_range"] == "xception" and meta["trial_id"] == tid
        # The crops' contract travels with the model: predict makes its crops the way prepare made these.
        assert meta["crop"] == dict(crop_size_px=80, face_margin=0.3, min_face_px=40, min_face_prob=0.9,
                                    face_policy="most_confident", video_frames=8)
        assert meta["role"] == {"v1-none-s5": "baseline", "v2-paper-s5": "candidate"}[tid]


def test_predict_a_folder_with_a_real_a_fake_and_no_face(flow, tiny_demo, tmp_path):
    import shutil

    import cv2

    from dfsweep.orchestrator.predict import choose_model
    from dfsweep.verdict.stats import auc

    run, _, _ = flow
    demo, _ = tiny_demo
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copy(sorted((demo / "target" / "real").glob("*.png"))[0], folder / "a_real.png")
    shutil.copy(sorted((demo / "target" / "fake").glob("*.png"))[0], folder / "b_fake.png")
    cv2.imwrite(str(folder / "c_noise.png"), np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8))
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(run.root), str(folder), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 3, result.output + repr(result.exception)  # 3: the noise image could not be scored
    import csv

    rows = {Path(r["file"]).name: r for r in csv.DictReader(open(out))}
    assert set(rows) == {"a_real.png", "b_fake.png", "c_noise.png"}
    for name in ("a_real.png", "b_fake.png"):
        assert rows[name]["face_found"] == "True" and 0 <= float(rows[name]["score"]) <= 1
        assert rows[name]["verdict"] in ("real", "fake")
    assert rows["c_noise.png"]["face_found"] == "False" and rows["c_noise.png"]["status"] == "no_face"
    # The model is the trial with the best source-val AUC, from the stored val scores.
    val = {}
    for f in run.scores.glob("*.parquet"):
        if not (run.models / f"{f.stem}.keras").exists():
            continue  # the cue has no model to predict with
        t = pq.read_table(f).to_pylist()
        sub = [r for r in t if r["split"] == "val" and r["perturbation"] == "none"]
        val[f.stem] = auc([r["label"] for r in sub], [r["score"] for r in sub])
    assert choose_model(run.root).path.stem == max(sorted(val), key=lambda k: val[k])


def test_predict_scores_a_source_test_image_as_its_trial_did(flow):
    """predict's preprocessing (MTCNN crop with the model card's settings, resize to the input size, the model's own
    pixel range) is training's: on source-test images it gives each sample's score in the trial's score file."""
    from dfsweep.data_pipeline.paths import unescape_path
    from dfsweep.orchestrator.predict import predict

    run, _, _ = flow
    paths = {r["sample_id"]: unescape_path(r["path"]) for r in pq.read_table(run.manifest).to_pylist()
             if r["status"] == "ok"}
    for tid in ("v1-none-s5", "v2-paper-s5"):
        rows = [r for r in pq.read_table(run.score_file(tid)).to_pylist()
                if (r["domain"], r["split"], r["perturbation"]) == ("source", "test", "none")]
        rows = sorted(rows, key=lambda r: r["sample_id"])[:4]
        _, preds = predict(run.models / f"{tid}.keras", [paths[r["sample_id"]] for r in rows], log=lambda *a: None)
        assert [p["status"] for p in preds] == ["ok"] * len(rows), preds
        got = np.array([p["score"] for p in preds])
        np.testing.assert_allclose(got, [r["score"] for r in rows], rtol=0, atol=1e-5, err_msg=tid)


def test_a_cut_score_file_reruns_its_trial_and_a_dropped_variant_leaves_the_report(flow, tmp_path):
    """Through the CLI on Ray, in a copy of the run: the sweep's config drops v2 and the cue's score file is cut
    short. Only the cue runs again (its file set aside in scores/_bad/); the report covers v1 and the cue, and names
    v2's score file as not in this sweep (issue 13, items 3 and 10)."""
    import shutil

    run, _, _ = flow
    copy = schema.RunDir(tmp_path / "run")
    for name in ("crops", "scores"):
        shutil.copytree(run.root / name, copy.root / name)
    for name in ("manifest.parquet", "config.yaml"):
        shutil.copy(run.root / name, copy.root / name)
    cfg = yaml.safe_load(run.config.read_text())
    cfg["sweep"]["variants"] = ["v1", "cue"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cue = Path(copy.score_file("cue-none-s5"))
    cue.write_bytes(cue.read_bytes()[: cue.stat().st_size // 2])
    v1_before = Path(copy.score_file("v1-none-s5")).stat().st_mtime_ns

    result = CliRunner().invoke(app, ["run", str(copy.root), "-c", str(tmp_path / "c.yaml")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = " ".join(result.output.split())
    assert "cue-none-s5.parquet is not a readable score file" in out and "1 of 2 trials to run: cue-none-s5" in out
    (aside,) = copy.scores_set_aside.iterdir()
    assert aside.name.startswith("cue-none-s5.parquet.")
    assert Path(copy.score_file("v1-none-s5")).stat().st_mtime_ns == v1_before  # v1 was not run again
    summary = json.loads(copy.summary.read_text())
    assert {t["trial_id"] for t in summary["trials"]} == {"v1-none-s5", "cue-none-s5"}
    assert summary["not_in_sweep"] == ["v2-paper-s5.parquet"] and "not in this sweep" in out
    keys = [("perturbation", "ascending"), ("level", "ascending"), ("domain", "ascending"), ("split", "ascending"),
            ("sample_id", "ascending")]
    again, original = pq.read_table(cue).sort_by(keys), pq.read_table(run.score_file("cue-none-s5")).sort_by(keys)
    assert again.column("sample_id").equals(original.column("sample_id"))
    np.testing.assert_allclose(again.column("score").to_numpy(), original.column("score").to_numpy(), atol=1e-6)


def test_an_ablation_grid_runs_on_ray_and_the_report_ranks_its_arms(flow, tmp_path):
    """Through the CLI on Ray, in a copy of the run: the sweep's config lists three V2 arms, the paper's (already
    run) and two head-only arms on the cached features, one selecting on target val. The dry run prices them, the run
    adds only the two new trials, and the report ranks the three arms against V1 and says which split chose each
    one's epochs (issue 15 items 3 and 4)."""
    import shutil

    run, _, _ = flow
    copy = schema.RunDir(tmp_path / "run")
    for name in ("crops", "scores", "features"):
        shutil.copytree(run.root / name, copy.root / name)
    for name in ("manifest.parquet", "config.yaml"):
        shutil.copy(run.root / name, copy.root / name)
    cfg = yaml.safe_load(run.config.read_text())
    cfg["sweep"].update(variants=["v1", "v2"], arms=[
        {"augmentation": "paper"},
        {"augmentation": "none", "unfreeze_layers": 0, "adapt_share": 0.5, "selection": "target_val",
         "finetune_epochs": 2, "finetune_lr": 0.001},
        {"augmentation": "none", "unfreeze_layers": 0, "adapt_share": 0.0, "finetune_epochs": 2, "finetune_lr": 0.001}])
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(cfg))
    new = ["v2-none-u0-a50-tval-e2-lr0.001-s5", "v2-none-u0-a0-e2-lr0.001-s5"]

    args = ["run", str(copy.root), "-c", str(tmp_path / "grid.yaml")]
    dry = CliRunner().invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output + repr(dry.exception)
    assert f"2 of 4 trials to run: {', '.join(new)}" in " ".join(dry.output.split()) and "CPU-minutes" in dry.output

    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert all(copy.score_file(t).exists() for t in new)
    summary = json.loads(copy.summary.read_text())
    ranked = sorted((t for t in summary["tests"] if t["domain"] == "target" and t["auc_level"] == "image"),
                    key=lambda t: t["rank"])
    assert [t["rank"] for t in ranked] == [1, 2, 3] and len({t["candidate"] for t in ranked}) == 3
    assert [t["mean_diff"] for t in ranked] == sorted((t["mean_diff"] for t in ranked), reverse=True)
    arms = {a["arm"]: a for a in summary["arms"]}
    assert arms["v2/none-u0-a50-tval-e2-lr0.001"]["selection"] == "target_val"
    assert arms["v2/paper"]["selection"] == "source_val" and arms["v2/paper"]["unfreeze_layers"] == 40
    assert "Ranking of the candidate arms" in result.output and "Arms: what each one is" in result.output
    # The progress lines count each arm's own epochs: 2 head + its 2 fine-tuning epochs.
    assert f"{new[1]}: finetune (epoch 3/4)" in result.output.splitlines(), result.output[:3000]
