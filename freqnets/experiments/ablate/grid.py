"""The grid of runs of an ablation, their names, and how shards split it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .config import AblationConfig, ConfigError


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid.

    Attributes:
        model: model name (for ``input == "dct"``, the DCT-input model).
        input: ``"rgb"`` or ``"dct"``.
        domain: the ``convert_model`` domain, or ``"none"`` for plain ``nn.Conv2d``.
        variant: ``"fixed"`` (the paper's frozen rate), ``"conv"`` (no conversion, float32),
            ``"bf16"`` (no conversion, bfloat16 autocast) or ``"dynamic"`` (energy rates,
            re-calibrated every epoch).
        rate: the nominal compress rate (``0`` for the unconverted baselines, ``None`` for dynamic).
        energy: the spectral energy kept by a dynamic run, else ``None``.
    """

    model: str
    input: str
    domain: str
    variant: str
    rate: float | None
    energy: float | None = None

    @property
    def run_id(self) -> str:
        """A readable, file-name-safe, unique name: ``cifar_resnet-rgb-fft-fixed-r0.5``."""
        setting = f"e{self.energy:g}" if self.energy is not None else f"r{self.rate:g}"
        name = f"{self.model}-{self.input}-{self.domain}-{self.variant}-{setting}"
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)

    def to_dict(self) -> dict:
        return asdict(self) | {"run_id": self.run_id}


def expand(config: AblationConfig) -> list[RunSpec]:
    """Every run of ``config``, in a fixed order: per input and model, baselines then domains x rates."""
    runs: list[RunSpec] = []
    for input_name in config.inputs:
        models = config.models if input_name == "rgb" else [config.dct_model]
        for model in models:
            if "conv" in config.baselines:
                runs.append(RunSpec(model, input_name, "none", "conv", 0.0))
            if "bf16" in config.baselines:
                runs.append(RunSpec(model, input_name, "none", "bf16", 0.0))
            for domain in config.domains:
                runs += [RunSpec(model, input_name, domain, "fixed", rate) for rate in config.rates]
            if "dynamic" in config.baselines:
                runs += [RunSpec(model, input_name, "fft", "dynamic", None, energy) for energy in config.energies]
    return runs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (``0 <= i < n``) -> ``(i, n)``; ``None`` -> ``None``.

    Raises:
        ConfigError: not of the form ``i/n`` with integers ``0 <= i < n``.
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not int(match[1]) < int(match[2]):
        raise ConfigError(f"shard must be 'i/n' with integers 0 <= i < n (e.g. 0/2), got {text!r}")
    return int(match[1]), int(match[2])


def select_shard(runs: list[RunSpec], shard: tuple[int, int] | None) -> list[RunSpec]:
    """The runs shard ``(i, n)`` owns (all of them for ``None``), in grid order.

    Round robin over the grid order: runs ``i, i + n, i + 2n, ...``. Deterministic for
    a given config, balanced to within one run, and the shards of ``0/n ... n-1/n``
    cover the grid exactly once.
    """
    if shard is None:
        return list(runs)
    index, count = shard
    return list(runs[index::count])
