"""freqnets ablate: configuration (presets, TOML/YAML files, overrides), validation errors, grid, shards."""

from __future__ import annotations

import pytest

from freqnets.experiments.ablate import build_config, expand
from freqnets.experiments.ablate.config import PRESETS, ConfigError
from freqnets.experiments.ablate.grid import RunSpec, parse_shard, select_shard
from freqnets.experiments.ablate.report import to_toml
from freqnets.layers import domains_with_layers


def test_presets_are_valid_and_the_default_is_quick():
    for name in PRESETS:
        assert build_config(name).epochs >= 1
    quick = build_config()
    assert quick.domains == ["fft", "dct", "svd", "winograd"] and quick.rates == [0.0, 0.25, 0.5, 0.75]
    assert set(quick.domains) <= set(domains_with_layers())


def test_file_then_overrides_win_in_order(tmp_path):
    toml = tmp_path / "study.toml"
    toml.write_text('[ablate]\nepochs = 3\nrates = [0.0, 0.5]\nmodels = ["small_cnn"]\nlr = 0.02\n')
    config = build_config("tiny", toml, {"epochs": 5, "lr": None})
    assert (config.epochs, config.rates, config.models, config.lr) == (5, [0.0, 0.5], ["small_cnn"], 0.02)
    yaml_file = tmp_path / "study.yaml"
    yaml_file.write_text("epochs: 4\ndomains: [svd]\nenergies: 0.95\n")
    config = build_config("tiny", yaml_file)
    assert (config.epochs, config.domains, config.energies) == (4, ["svd"], [0.95])


def test_resolved_config_reads_back(tmp_path):
    config = build_config("quick", overrides={"out": str(tmp_path / 'with "quotes"')})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config.to_dict()))
    assert build_config(None, path) == config


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"rates": [0.5, 1.0]}, "rates"),
        ({"rates": [float("nan")]}, "rates"),
        ({"rates": ["0.5"]}, "rates"),
        ({"domains": ["fft", "wavelet"]}, "domains"),
        ({"inputs": ["rgb", "hsv"]}, "inputs"),
        ({"baselines": ["fp16"]}, "baselines"),
        ({"energies": [0.0]}, "energies"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1.5}, "epochs"),
        ({"batch_size": True}, "batch_size"),
        ({"lr": -0.1}, "lr"),
        ({"device": "tpu"}, "device"),
        ({"models": []}, "models"),
        ({"model_args": [1]}, "model_args"),
        ({"epoch": 3}, "unknown setting"),
    ],
)
def test_bad_values_raise_config_errors_naming_the_field(overrides, named):
    with pytest.raises(ConfigError, match=named):
        build_config("tiny", overrides=overrides)
    assert issubclass(ConfigError, ValueError)


def test_bad_presets_and_files(tmp_path):
    with pytest.raises(ConfigError, match="preset"):
        build_config("huge")
    with pytest.raises(FileNotFoundError):
        build_config("tiny", tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [\n")
    with pytest.raises(ConfigError, match="cannot read"):
        build_config("tiny", bad)
    wrong = tmp_path / "study.json"
    wrong.write_text("{}")
    with pytest.raises(ConfigError, match=r"\.toml, \.yaml"):
        build_config("tiny", wrong)


def test_grid_expansion_counts_and_order():
    config = build_config("quick", overrides={"energies": [0.99, 0.9, 0.9]})
    runs = expand(config)
    domains, rates = config.domains, config.rates
    assert len(runs) == 2 + len(domains) * len(rates) + 2
    assert [r.variant for r in runs[:2]] == ["conv", "bf16"]
    fixed = [(r.domain, r.rate) for r in runs if r.variant == "fixed"]
    assert fixed == [(d, r) for d in domains for r in rates]
    assert [(r.domain, r.energy) for r in runs if r.variant == "dynamic"] == [("fft", 0.99), ("fft", 0.9)]
    assert len({r.run_id for r in runs}) == len(runs)
    both = expand(build_config("tiny", overrides={"inputs": ["rgb", "dct"], "models": ["small_cnn", "resnet18"]}))
    assert [r.model for r in both if r.input == "dct"] == [config.dct_model] * (1 + 2)


def test_run_ids_are_file_safe():
    run = RunSpec("hf-hub:org/model", "rgb", "fft", "fixed", 0.25)
    assert "/" not in run.run_id and ":" not in run.run_id and run.run_id.endswith("r0.25")


def test_shards_partition_the_grid_deterministically():
    runs = expand(build_config("quick"))
    for count in (1, 2, 3, 7, len(runs) + 2):
        shards = [select_shard(runs, (i, count)) for i in range(count)]
        ids = sorted(r.run_id for shard in shards for r in shard)
        assert ids == sorted(r.run_id for r in runs)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert shards == [select_shard(runs, (i, count)) for i in range(count)]
    assert select_shard(runs, None) == runs


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0", "1/2/3"])
def test_bad_shards(text):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)
    assert parse_shard(" 1 / 3 ") == (1, 3)
