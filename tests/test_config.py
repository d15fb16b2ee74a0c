import dataclasses

import pytest

from dfsweep.config import Config, ConfigError, config_from_dict, config_to_dict, load_config, with_overrides


def test_defaults_follow_the_paper():
    cfg = Config()
    assert cfg.train.input_size_px == 299 and cfg.train.pixel_range == "xception"
    assert cfg.train.dense_units == 256 and cfg.train.dropout == 0.5
    assert cfg.train.head_lr == 1e-4 and cfg.train.finetune_lr == 1e-5 and cfg.train.unfreeze_last_layers == 40
    assert cfg.train.batch_size == 32
    assert cfg.sweep.seeds == (42, 123, 7)
    assert cfg.prepare.source_per_class_cap == 200 and cfg.prepare.target_per_class_cap == 150


def test_yaml_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  input_size_px: 128\n  head_lr: 0.001\nsweep:\n  seeds: [1, 2]\n")
    cfg = load_config(path)
    assert cfg.train.input_size_px == 128 and cfg.train.head_lr == 0.001
    assert cfg.sweep.seeds == (1, 2)
    assert cfg.train.finetune_lr == 1e-5  # untouched default
    assert dataclasses.is_dataclass(cfg) and cfg == config_from_dict(config_to_dict(cfg))


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"train": {"input_size": 128}})
    msg = str(err.value)
    assert "input_size" in msg and "input_size_px" in msg and "pixel_range" in msg


def test_unknown_section_is_refused():
    with pytest.raises(ConfigError, match="valid sections: prepare, train, sweep, report"):
        config_from_dict({"trian": {}})


@pytest.mark.parametrize("data, fragment", [
    ({"train": {"input_size_px": 64}}, "at least|>= 71"),
    ({"train": {"pixel_range": "imagenet"}}, "pixel_range"),
    ({"train": {"batch_size": 31}}, "even"),
    ({"train": {"head_epochs": "five"}}, "must be an integer"),
    ({"sweep": {"seeds": 42}}, "must be a list"),
    ({"sweep": {"seeds": [1, 1]}}, "duplicates"),
    ({"prepare": {"source_val_fraction": 0.5, "source_test_fraction": 0.5}}, "room for train"),
    ({"report": {"ci_level": 95}}, "ci_level"),
    ({"sweep": {"selections": ["test"]}}, "source_val, target_val"),
    ({"sweep": {"adapt_shares": [1.0]}}, r"\[0, 1\)"),
    ({"sweep": {"arms": [{"augmentation": "none", "unfrozen": 0}]}}, "valid keys: name, augmentation, unfreeze_layers"),
    ({"sweep": {"arms": ["paper"]}}, "items must be mappings"),
    ({"sweep": {"arms": [{"selection": "target_test"}]}}, "selection must be one of source_val, target_val"),
    ({"sweep": {"arms": [{"augmentation": "paper"}], "unfreeze_layers": [0, 40]}}, "either sweep.arms .* or the grid"),
    ({"prepare": {"target_adapt_fraction": 0.2, "target_val_fraction": 0.2}}, "carved out of the adapt pool"),
])
def test_bad_values_are_refused_with_the_key_named(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config_from_dict(data)


def test_frozen_and_overridable():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.input_size_px = 71  # type: ignore[misc]
    cfg2 = with_overrides(cfg, "prepare", source="/data/a", target=None)
    assert cfg2.prepare.source == "/data/a" and cfg2.prepare.target == "" and cfg.prepare.source == ""


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_arms_are_mappings_whose_left_out_keys_stay_unset_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sweep:\n  arms:\n    - {augmentation: paper}\n"
                    "    - {name: head_adapt, augmentation: none, unfreeze_layers: 0, adapt_share: 0.5,"
                    " selection: target_val}\n")
    cfg = load_config(path)
    paper, head = cfg.sweep.arms
    assert (paper.name, paper.augmentation, paper.unfreeze_layers, paper.adapt_share, paper.selection) == \
        ("", "paper", None, None, "source_val")
    assert (head.name, head.unfreeze_layers, head.adapt_share, head.selection) == ("head_adapt", 0, 0.5, "target_val")
    assert cfg == config_from_dict(config_to_dict(cfg))
    assert with_overrides(cfg, "sweep", gpus_per_trial=1.0).sweep.arms == cfg.sweep.arms
