"""The ablation's configuration: presets, TOML/YAML files, command-line overrides, validation.

One :class:`AblationConfig` describes a whole study. It is built from a preset
(``quick``, ``cifar10``, ``tiny``), updated by a config file and then by
command-line values, and validated once; every bad value raises
:class:`ConfigError` (a ``ValueError``) naming the field and what it accepts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import DEFAULT_DATA


class ConfigError(ValueError):
    """A configuration value that is missing, of the wrong type or out of range; the message names it."""


#: Input representations: RGB pixels, or the DCT coefficients stored in JPEG files.
INPUTS = ("rgb", "dct")
#: Baselines the paper compares band-limiting with (see docs/ablation.md).
BASELINES = ("conv", "bf16", "dynamic")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class AblationConfig:
    """Everything that defines an ablation study (its grid, training recipe, data and output).

    Attributes:
        models: timm model names, or ``small_cnn`` / ``cifar_resnet`` (built-in small CIFAR networks).
        model_args: keyword arguments for every model factory (``{"width": 16}``, timm's ``drop_rate`` ...).
        inputs: input representations, ``"rgb"`` and/or ``"dct"`` (JPEG DCT coefficients).
        dct_model: the DCT-input timm model used for ``input = "dct"`` runs (early fusion: it takes
            ``(B, 192, H/8, W/8)`` coefficients); ``dct_model_args`` are its keyword arguments.
        domains: ``convert_model`` domains (any of :func:`freqnets.layers.domains_with_layers`).
        rates: compress rates, fractions of coefficients discarded, ``0 <= rate < 1``.
        baselines: ``conv`` (plain ``nn.Conv2d``, float32), ``bf16`` (plain, bfloat16 autocast),
            ``dynamic`` (FFT layers whose rates keep ``energies`` of the input spectrum,
            re-calibrated at the start of every epoch).
        energies: spectral energy fractions kept by the ``dynamic`` baseline, ``0 < e <= 1``.
        data: ``cifar10`` (torchvision download), a zip or folder of JPEGs with ``train/`` and
            ``test/`` class folders (or ``train.zip``/``test.zip``), or an ImageFolder tree.
        train_per_class / test_per_class: the first N files of each class (0: all of them).
        image_size: images are resized to this square size when they differ.
        epochs, batch_size, lr, momentum, weight_decay: SGD (Nesterov) with a cosine schedule.
        seed: seeds the model initialisation, data order and augmentation of every run.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        threads: torch CPU threads (0: torch's choice).
        out: output folder (results, checkpoints, plots).
        calibration_images: training images the ``dynamic`` baseline measures spectra on.
    """

    models: list[str] = field(default_factory=lambda: ["cifar_resnet"])
    model_args: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=lambda: ["rgb"])
    dct_model: str = "dct_resnet18_cifar"
    dct_model_args: dict[str, Any] = field(default_factory=dict)
    domains: list[str] = field(default_factory=lambda: ["fft", "dct", "svd", "winograd"])
    rates: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    baselines: list[str] = field(default_factory=lambda: ["conv", "bf16", "dynamic"])
    energies: list[float] = field(default_factory=lambda: [0.99, 0.9])
    data: str = str(DEFAULT_DATA)
    train_per_class: int = 0
    test_per_class: int = 0
    image_size: int = 32
    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    out: str = "runs/ablate"
    calibration_images: int = 64

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # The README's main command: the bundled 2,000 + 500 CIFAR-10 JPEGs, a small all-3x3 CNN that every
    # domain converts entirely, every domain and rate and the three baselines, in a few minutes on 2 CPU cores.
    # One thread: this small network gains nothing from two (measured: 2 min 13 s with one, 5 min with two).
    "quick": dict(
        models=["small_cnn"], model_args={"width": 16}, train_per_class=0, test_per_class=0,
        epochs=2, batch_size=50, lr=0.05, energies=[0.99, 0.9], threads=1, out="runs/ablate",
    ),
    # A full study on CIFAR-10 (torchvision's download, or --data ../shared/data/cifar10-jpeg/).
    "cifar10": dict(
        models=["resnet18"], model_args={"cifar_stem": True}, data="cifar10", train_per_class=0,
        test_per_class=0, epochs=30, batch_size=128, lr=0.1, energies=[0.99, 0.95, 0.9], out="runs/ablate-cifar10",
    ),
    # For tests: a few images, one epoch, a tiny network.
    "tiny": dict(
        models=["small_cnn"], model_args={"width": 4}, domains=["fft"], rates=[0.0, 0.5], baselines=["conv"],
        energies=[0.9], train_per_class=4, test_per_class=2, epochs=1, batch_size=8, threads=1,
        calibration_images=8, out="runs/ablate-tiny",
    ),
}  # fmt: skip

_LIST_FIELDS = {"models", "inputs", "domains", "rates", "baselines", "energies"}


def load_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file, as a dict.

    The settings may sit at the top level or under an ``[ablate]`` table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            values = tomllib.loads(path.read_text())
        elif suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(path.read_text()) or {}
        else:
            raise ConfigError(f"config file must end in .toml, .yaml or .yml, got {path.name!r}")
    except (tomllib.TOMLDecodeError, ImportError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    except RecursionError:
        raise ConfigError(f"cannot read config file {path}: nested too deeply") from None
    except Exception as error:  # yaml.YAMLError without importing yaml at module level
        if type(error).__module__.startswith("yaml"):
            raise ConfigError(f"cannot read config file {path}: {error}") from error
        raise
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of settings, got {type(values).__name__}")
    return values.get("ablate", values)


def build_config(
    preset: str | None = "quick", file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> AblationConfig:
    """Preset, then file, then ``overrides`` (``None`` values ignored), validated.

    Raises:
        ConfigError: an unknown preset or field, or a bad value (the message names which).
        FileNotFoundError: ``file`` does not exist.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        values.update(PRESETS[preset])
    if file is not None:
        values.update(load_file(file))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(AblationConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}")
    return validate(AblationConfig(**values))


def _require(condition: bool, name: str, accepted: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{name} must be {accepted}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A finite real number (not a bool, NaN or infinity)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


#: Bounds of the integer settings, ``(low, high)``: beyond them a value is a typo, not a study
#: (``epochs = 99999999999999999999`` would run for ever; a seed must fit torch's 64-bit generator).
_INT_BOUNDS = {
    "train_per_class": (0, 10**9), "test_per_class": (0, 10**9), "threads": (0, 4096), "seed": (0, 2**63 - 1),
    "epochs": (1, 100_000), "batch_size": (1, 1_000_000), "image_size": (8, 4096), "calibration_images": (1, 10**6),
}  # fmt: skip
#: Bounds of the real settings: a learning rate of 1e308 overflows the first step to inf/NaN.
_REAL_BOUNDS = {"lr": (0.0, 10.0), "momentum": (0.0, 1.0), "weight_decay": (0.0, 1.0)}


def validate(config: AblationConfig) -> AblationConfig:
    """Check every field; lists are de-duplicated in order. Returns ``config``."""
    from ...layers import domains_with_layers

    for name in _LIST_FIELDS:
        value = getattr(config, name)
        if isinstance(value, (str, numbers.Number)):
            value = [value]
        _require(isinstance(value, (list, tuple)), name, "a list", value)
        setattr(config, name, list(dict.fromkeys(value)))
    _require(len(config.models) > 0 and all(isinstance(m, str) and m for m in config.models), "models",
             "a non-empty list of model names", config.models)  # fmt: skip
    for name in ("model_args", "dct_model_args"):
        _require(isinstance(getattr(config, name), dict), name, "a table of keyword arguments", getattr(config, name))
    _require(len(config.inputs) > 0 and set(config.inputs) <= set(INPUTS), "inputs", f"a list among {INPUTS}",
             config.inputs)  # fmt: skip
    _require(isinstance(config.dct_model, str) and bool(config.dct_model), "dct_model", "a model name",
             config.dct_model)  # fmt: skip
    available = domains_with_layers()
    _require(set(config.domains) <= set(available), "domains", f"a list among {available}", config.domains)
    _require(all(_is_real(r) and 0 <= r < 1 for r in config.rates), "rates",
             "compress rates in [0, 1) (fraction of coefficients discarded)", config.rates)  # fmt: skip
    config.rates = [float(r) for r in config.rates]
    _require(set(config.baselines) <= set(BASELINES), "baselines", f"a list among {BASELINES}", config.baselines)
    _require(all(_is_real(e) and 0 < e <= 1 for e in config.energies), "energies", "fractions in (0, 1]",
             config.energies)  # fmt: skip
    config.energies = [float(e) for e in config.energies]
    _require("dynamic" not in config.baselines or bool(config.energies), "energies",
             "non-empty when the 'dynamic' baseline is on", config.energies)  # fmt: skip
    _require(isinstance(config.data, (str, Path)) and str(config.data) != "", "data",
             "'cifar10', a zip or a folder", config.data)  # fmt: skip
    config.data = str(config.data)
    for name, (low, high) in _INT_BOUNDS.items():
        value = getattr(config, name)
        _require(_is_int(value) and low <= value <= high, name, f"an int in [{low}, {high}]", value)
    for name, (low, high) in _REAL_BOUNDS.items():
        value = getattr(config, name)
        _require(_is_real(value) and low <= value <= high, name, f"a finite number in [{low:g}, {high:g}]", value)
    _require(config.lr > 0, "lr", "> 0", config.lr)
    _require(config.device in DEVICES, "device", f"one of {DEVICES}", config.device)
    _require(isinstance(config.out, (str, Path)) and str(config.out) != "", "out", "a folder path", config.out)
    config.out = str(config.out)
    if not config.domains and not config.baselines:
        raise ConfigError("domains and baselines are both empty: the grid has no runs")
    return config
