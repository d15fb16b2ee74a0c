"""The whole flow with every artifact on s3:// (a moto S3 server on loopback): `dfsweep run s3://...` prepares,
sweeps and reports with nothing written to a local run folder; `dfsweep report s3://...` rebuilds the report from
the bucket alone.

The run is a real `dfsweep` process with its own local Ray, so Ray Data's MTCNN actors and Tune's trials (which
inherit its environment) reach the bucket the way nodes of a cluster would: by URI, with their own credentials.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pyarrow.fs as pafs
import pytest
import yaml
from rich.console import Console

from dfsweep import schema
from dfsweep.verdict.scores import collect_scores
from dfsweep.verdict.report import report

pytestmark = [pytest.mark.ray, pytest.mark.tf, pytest.mark.slow]


def _keys(fs: pafs.FileSystem, prefix: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True))
    return sorted(i.path[len(prefix) + 1:] for i in infos if i.type == pafs.FileType.File)


@pytest.fixture(scope="module")
def s3_run(tiny_demo, weights_file, s3_server, tmp_path_factory):
    import uuid

    demo, _ = tiny_demo
    work = tmp_path_factory.mktemp("s3run")
    endpoint = s3_server["AWS_ENDPOINT_URL"].split("://")[1]
    fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="testing", secret_key="testing",
                           region="us-east-1", allow_bucket_creation=True)
    bucket = f"dfsweep-{uuid.uuid4().hex[:12]}"
    fs.create_dir(bucket)
    cfg = {
        "prepare": {"source": str(demo / "source"), "target": str(demo / "target"), "crop_size_px": 80,
                    "face_workers": 2},
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 2, "finetune_epochs": 1,
                  "batch_size": 8, "test_perturbations": {"jpeg": [40], "blur": [], "noise": []}},
        "sweep": {"variants": ["v1", "v2"], "seeds": [3], "cpus_per_trial": 1},
        "report": {"bootstrap_samples": 200},
    }
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    uri = f"s3://{bucket}/runs/one"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own Ray, which inherits the S3 settings
    # Its own short temp dir: Ray's socket paths must stay under 108 bytes (a pytest tmp path can be too long).
    env.update(s3_server, RAY_TMPDIR=tempfile.mkdtemp(prefix="dfs3-", dir="/tmp"), COLUMNS="160")
    proc = subprocess.run([sys.executable, "-m", "dfsweep.cli", "run", uri, "-c", str(work / "c.yaml")], cwd=work,
                          env=env, capture_output=True, text=True, timeout=900)
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return dict(fs=fs, bucket=bucket, uri=uri, prefix=f"{bucket}/runs/one", work=work, output=proc.stdout)


def test_every_artifact_is_in_the_bucket(s3_run):
    keys = _keys(s3_run["fs"], s3_run["prefix"])
    for name in ("config.yaml", "manifest.parquet", "crops/_DONE", "summary.json", "metrics.csv", "report.html",
                 "scores/v1-none-s3.parquet", "scores/v2-paper-s3.parquet", "models/v1-none-s3.keras",
                 "models/v2-paper-s3.json", "figures/roc.png"):
        assert name in keys, (name, keys)
    kinds = {k.split("/")[0] for k in keys}
    assert {"detections", "crops", "features", "tune"} <= kinds and "degraded" not in kinds  # degraded on the fly
    assert any(k.startswith("crops/shard-") for k in keys) and "crops/_SETTINGS.json" in keys
    assert any(k.startswith("features/") and k.endswith("/source-train.npy") for k in keys)
    assert any(k.startswith("features/") and k.endswith("/source-train.ids.parquet") for k in keys)
    # Tune's experiment lives there too: per-epoch results and the V2 trial's checkpoint.
    assert any(k.startswith("tune/sweep-001/v2-paper-s3/") and k.endswith("result.json") for k in keys)
    assert any(k.startswith("tune/sweep-001/v2-paper-s3/checkpoint_") for k in keys)
    assert not [k for k in keys if k.endswith(".tmp")]
    # Nothing went to a local folder named after the URI.
    assert not [p for p in s3_run["work"].iterdir() if p.name.startswith("s3")]
    assert s3_run["uri"] in s3_run["output"]  # the summary line names where it is
    # Ray's output went to a local temporary file, uploaded beside the rest when the run ended, and named at the start.
    (log,) = [k for k in keys if k.startswith("logs/run-") and k.endswith(".log")]
    assert f"log: {s3_run['uri']}/{log} (uploaded when the run ends; meanwhile /" in s3_run["output"]
    assert b"experiment state" in s3_run["fs"].open_input_stream(f"{s3_run['prefix']}/{log}").read()


def test_scores_read_back_from_the_bucket_and_the_report_rebuilds_from_it(s3_run, s3_server, monkeypatch):
    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    run = schema.RunDir(s3_run["uri"])
    scores = collect_scores(run.scores)
    assert sorted(set(scores.column("trial_id").to_pylist())) == ["v1-none-s3", "v2-paper-s3"]
    assert set(zip(scores.column("perturbation").to_pylist(), scores.column("level").to_pylist())) == {
        ("none", 0), ("jpeg", 40)}
    stored = json.loads(run.summary.read_text())
    rebuilt = report(run.root, None, Console(file=io.StringIO()))
    assert json.loads(json.dumps(rebuilt, default=str))["trials"] == stored["trials"]
    assert rebuilt["run_dir"] == s3_run["uri"]
