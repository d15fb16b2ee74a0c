"""cluster.yaml is checked offline against Ray's own cluster-config schema (no credentials, no network)."""

from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def _validate(cfg: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(cfg))


def test_cluster_yaml_is_valid_for_ray():
    cfg = yaml.safe_load(CLUSTER_YAML.read_text())
    _validate(cfg)
    assert cfg["docker"]["image"].startswith("rayproject/ray:2.60.0-py311-gpu")
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["node_config"]["InstanceType"].startswith("g") and gpu["min_workers"] == 0


def test_a_typo_in_cluster_yaml_fails_validation():
    cfg = yaml.safe_load(CLUSTER_YAML.read_text())
    cfg["available_node_types"]["gpu_worker"]["max_wokers"] = cfg["available_node_types"]["gpu_worker"].pop("max_workers")
    with pytest.raises(Exception, match="max_wokers|Additional properties"):
        _validate(cfg)
