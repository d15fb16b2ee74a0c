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
    # Token auth as Ray documents it for `ray up`: the local token on every node, every node in token mode.
    assert cfg["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assert cmd.startswith("export RAY_AUTH_MODE=token;"), cmd
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["node_config"]["InstanceType"].startswith("g") and gpu["min_workers"] == 0


def test_a_typo_in_cluster_yaml_fails_validation():
    cfg = yaml.safe_load(CLUSTER_YAML.read_text())
    cfg["available_node_types"]["gpu_worker"]["max_wokers"] = cfg["available_node_types"]["gpu_worker"].pop("max_workers")
    with pytest.raises(Exception, match="max_wokers|Additional properties"):
        _validate(cfg)


def test_local_cluster_template_is_valid_for_ray_once_filled_in():
    """configs/cluster-local.yaml (the one `make test-ssh` runs) with its placeholders filled in, as the test does."""
    import sys

    sys.path.insert(0, str(CLUSTER_YAML.parent / "scripts"))
    from ray_up_local import TEMPLATE, fill_template

    text = TEMPLATE.read_text()
    assert {"__SSH_USER__", "__SSH_KEY__", "__VENV__"} <= set(__import__("re").findall(r"__[A-Z_]+__", text))
    cfg = yaml.safe_load(fill_template(text, "me", Path("/home/me/.ssh/id_ed25519"), Path("/opt/venv")))
    _validate(cfg)
    assert cfg["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    start = " ".join(cfg["head_start_ray_commands"])
    assert "/opt/venv/bin/ray start --head" in start and "--dashboard-host=127.0.0.1" in start
    # ssh forwards no environment: every command Ray runs over ssh exports what Ray needs itself, token mode first.
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assert cmd.startswith("export RAY_AUTH_MODE=token "), cmd
    assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert not any("pip" in c for c in cfg["setup_commands"])  # the venv exists: nothing is installed
