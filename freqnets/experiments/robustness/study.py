"""``freqnets robustness``: perturbation channels as defenses, adaptive attacks, band-limited models.

Stages (each result is saved to ``<out>/state.json`` as soon as it is done; a rerun with the same
output folder resumes, skipping finished stages and finished channels of the sweep):

1. ``model``: load a checkpoint or train the small CIFAR CNN of :mod:`..training`, behind a
   normalisation layer so that it takes ``[0, 1]`` images (saved to ``model.pt``).
2. ``attacks``: non-adaptive foolbox L-inf PGD and C&W L2 on test images the model classifies
   correctly (``adversarial.pt``); ``delta_adv`` is the mean L2 distortion.
3. ``sweep``: every channel over its sweep of strengths: distortion ``delta_c``, clean accuracy
   (whole test set), accuracy on the adversarial examples with and without the channel.
   Random channels classify by majority :class:`~freqnets.layers.Vote` over ``vote_draws``.
4. ``adaptive``: at each channel's best setting (most non-adaptive PGD examples recovered), our adaptive
   PGD (exact gradient / BPDA, EOT for random channels) against the defended model.
5. ``transfer``: adaptive examples built against the Laplace channel alone, evaluated against
   every channel at its best setting.
6. ``blackbox``: band-limited (``convert_model(model, "fft", rate)`` fine-tuned) vs full-spectrum
   model under foolbox's salt-and-pepper and additive uniform noise attacks: the L2 distortion
   each image needs, and the share of images where the band-limited model needs more.
7. ``noise``: accuracy under Gaussian input noise for models fine-tuned at several compression
   rates.
8. ``instability``: ``M1`` (input-gradient norm) and ``M2`` (top input-Hessian eigenvalue) around
   natural and PGD examples.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ...layers import CHANNELS, Vote, convert_model, make_channel
from ...layers.perturbation import PerturbationChannel
from .. import data, storage
from ..data import CIFAR10_MEAN, CIFAR10_STD, DEFAULT_DATA
from ..training import accuracy as batched_accuracy
from ..training import small_cnn, train_on_tensors
from . import attacks, instability

DEFAULT_SWEEPS: dict[str, list[float]] = {
    "fft": [0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
    "svd": [0.5, 0.7, 0.8, 0.9],
    "color_depth": [6, 5, 4, 3, 2],
    "jpeg": [90, 75, 50, 25, 10],
    "gauss": [0.02, 0.05, 0.1, 0.2],
    "uniform": [0.03, 0.08, 0.15, 0.3],
    "laplace": [0.02, 0.04, 0.08, 0.15],
}
# Settings a resumed study may change: they add work without changing what is already done.
RESUMABLE_CHANGES = ("out", "stages", "channels")
STAGES = ("model", "attacks", "sweep", "adaptive", "transfer", "blackbox", "noise", "instability")


@dataclass
class StudyConfig:
    """Settings of the study. The defaults take about 20 CPU-minutes on the bundled data (:data:`QUICK`: 1.5)."""

    data: Path = DEFAULT_DATA
    out: Path = Path("runs/robustness")
    checkpoint: Path | None = None
    train_per_class: int = 200
    test_per_class: int = 50
    epochs: int = 8
    attack_images: int = 100
    epsilon: float = 8 / 255
    pgd_steps: int = 20
    cw_steps: int = 50
    cw_binary_steps: int = 4
    adaptive_steps: int = 20
    eot_draws: int = 8
    vote_draws: int = 8
    blackbox_images: int = 50
    blackbox_steps: int = 200
    bl_rate: float = 0.5
    finetune_epochs: int = 1
    noise_rates: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.75])
    noise_sigmas: list[float] = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
    instability_images: int = 50
    power_iterations: int = 10
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_SWEEPS))
    sweeps: dict[str, list[float]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_SWEEPS))
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"channels must be among {', '.join(CHANNELS)}, got {unknown}")
        bad_stages = [s for s in self.stages if s not in STAGES]
        if bad_stages:
            raise ValueError(f"stages must be among {', '.join(STAGES)}, got {bad_stages}")
        for name in self.channels:
            for strength in self.sweeps.get(name, []):
                make_channel(name, strength)  # raises on a strength outside the channel's range
        for name in ("train_per_class", "test_per_class", "attack_images", "pgd_steps", "cw_steps", "eot_draws",
                     "vote_draws", "blackbox_images", "instability_images", "power_iterations"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 < self.epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], got {self.epsilon}")


QUICK = {
    "epochs": 5, "attack_images": 40, "pgd_steps": 10, "cw_steps": 20, "cw_binary_steps": 3, "adaptive_steps": 10,
    "eot_draws": 4, "vote_draws": 4, "blackbox_images": 20, "blackbox_steps": 100, "noise_rates": [0.0, 0.5],
    "noise_sigmas": [0.0, 0.1, 0.2, 0.3], "instability_images": 20, "power_iterations": 5,
    "sweeps": {name: strengths[::2] for name, strengths in DEFAULT_SWEEPS.items()},
}  # fmt: skip
"""The ``--quick`` preset: fewer images, steps, draws and strengths (about a fifth of the default work)."""


class ImageClassifier(nn.Module):
    """``[0, 1]`` images -> CIFAR normalisation -> ``network``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", CIFAR10_MEAN.clone())
        self.register_buffer("std", CIFAR10_STD.clone())
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x - self.mean) / self.std)


def load_split(source: Path, split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[0, 1]`` images ``(N, 3, 32, 32)`` and labels of a CIFAR-10 JPEG zip or folder."""
    images = data.load_split(source, split, per_class)
    return images.images.float() / 255, images.labels


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> float:
    """Top-1 accuracy; ``model`` may return logits or vote shares; NaN for no images."""
    return batched_accuracy(model, x, y, batch)


def defended(model: nn.Module, channel: PerturbationChannel, draws: int) -> nn.Module:
    """``model`` behind ``channel``; random channels classify by majority vote over ``draws``."""
    return Vote(model, channel, draws=draws) if channel.random else nn.Sequential(channel, model).eval()


class Study:
    """Runs the stages of the study with checkpointing in ``config.out``."""

    def __init__(self, config: StudyConfig, progress: bool = True, redo: tuple[str, ...] = ()) -> None:
        """``redo``: stages (after ``attacks``) whose saved results are dropped, so they run again."""
        bad = [s for s in redo if s not in STAGES[2:]]
        if bad:
            raise ValueError(f"redo must name stages among {', '.join(STAGES[2:])}, got {bad}")
        self.config = config
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / "state.json"
        self.state: dict[str, Any] = {}
        if self.state_path.exists():
            try:
                self.state = storage.read_json(self.state_path, _check_state)
            except storage.CorruptFile as error:  # start over rather than trust it
                storage.move_aside(self.state_path, str(error))
        for stage in redo:
            self.state.pop(stage, None)
            self.state.get("seconds", {}).pop(stage, None)
        self.progress = progress
        # adaptive attacks of this process, by channel: the transfer stage reuses the adaptive stage's
        self._adaptive_results: dict[tuple, attacks.AttackResult] = {}
        torch.manual_seed(config.seed)

    # -- bookkeeping ---------------------------------------------------------------------------
    def _save(self) -> None:
        storage.write_text(self.state_path, json.dumps(self.state, indent=1, default=_json_default))

    def _bar(self, items, description: str):
        if not self.progress:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=description, leave=False)

    def _log(self, message: str) -> None:
        if self.progress:
            print(message, flush=True)

    # -- data and model --------------------------------------------------------------------------
    def load_data(self) -> None:
        c = self.config
        self.x_train, self.y_train = load_split(c.data, "train", c.train_per_class)
        self.x_test, self.y_test = load_split(c.data, "test", c.test_per_class)

    def stage_model(self) -> None:
        c = self.config
        path = Path(c.checkpoint) if c.checkpoint else self.out / "model.pt"
        self.model = ImageClassifier(small_cnn())
        if c.checkpoint and not path.exists():
            raise FileNotFoundError(f"no such checkpoint: {path}")
        if path.exists() and self._load_weights(self.model, path, given=bool(c.checkpoint)):
            self._log(f"loaded model from {path}")
        else:
            self._log(f"training the small CNN for {c.epochs} epochs on {len(self.x_train)} images")
            seconds = train_on_tensors(self.model, self.x_train, self.y_train, c.epochs, 0.05, c.seed)
            torch.save(self.model.state_dict(), path)
            self.state["model"] = {"seconds_per_epoch": seconds, "checkpoint": str(path)}
        self.model.eval()
        with torch.no_grad():
            hits = torch.cat([self.model(x).argmax(-1) for x in self.x_test.split(250)]) == self.y_test
        self.state.setdefault("model", {})["clean_accuracy"] = hits.sum().item() / len(hits)  # as accuracy()
        correct = hits.nonzero().flatten()
        # A seeded random subset of the correctly classified images, so that every class is represented.
        order = torch.randperm(len(correct), generator=torch.Generator().manual_seed(c.seed))
        self.attack_index = correct[order[: c.attack_images]].sort().values
        self.x_attack, self.y_attack = self.x_test[self.attack_index], self.y_test[self.attack_index]
        self._save()

    def _load_weights(self, model: nn.Module, path: Path, given: bool) -> bool:
        """Load ``path`` into ``model`` (``weights_only``; finite, fitting the model). A corrupt file the
        study wrote is moved aside (``False``: train again); a corrupt ``--checkpoint`` is an error."""

        initial = copy.deepcopy(model.state_dict())

        def check(state: Any) -> None:
            if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
                raise ValueError("non-finite weights")
            model.load_state_dict(state)

        try:
            storage.load_torch(path, check=check)
            return True
        except storage.CorruptFile as error:
            model.load_state_dict(initial)  # a failed load may have copied some tensors
            if given:
                raise
            storage.move_aside(path, str(error))
            return False

    # -- non-adaptive attacks ----------------------------------------------------------------------
    def stage_attacks(self) -> None:
        c = self.config
        path = self.out / "adversarial.pt"
        if "attacks" in self.state and path.exists():
            try:
                self.adversarial = storage.load_torch(path, check=_check_adversarial)
                return
            except storage.CorruptFile as error:  # attack again
                storage.move_aside(path, str(error))
        results = {}
        results["pgd"] = attacks.pgd_linf(self.model, self.x_attack, self.y_attack, c.epsilon, c.pgd_steps)
        results["cw"] = attacks.carlini_wagner_l2(self.model, self.x_attack, self.y_attack, c.cw_steps,
                                                  c.cw_binary_steps)  # fmt: skip
        self.adversarial = {name: r.adversarial for name, r in results.items()}
        torch.save(self.adversarial, path)
        self.state["attacks"] = {
            name: {"delta_adv": r.delta_adv, "adversarial_accuracy": accuracy(self.model, r.adversarial, self.y_attack),
                   "images": len(self.x_attack)}
            for name, r in results.items()
        }  # fmt: skip
        self._save()

    # -- sweep ------------------------------------------------------------------------------------
    def stage_sweep(self) -> None:
        c = self.config
        rows = self.state.setdefault("sweep", {})
        for name in self._bar(c.channels, "sweep"):
            if name in rows:
                continue
            channel_rows = []
            for strength in c.sweeps[name]:
                channel = make_channel(name, strength)
                channel.generator = torch.Generator().manual_seed(c.seed)
                model = defended(self.model, channel, c.vote_draws)
                row = {"channel": name, "strength_name": channel.strength_name, "strength": strength,
                       "distortion": channel.distortion(self.x_attack),
                       "clean_accuracy": accuracy(model, self.x_test, self.y_test)}  # fmt: skip
                for attack, adversarial in self.adversarial.items():
                    # the undefended model on these examples: measured once, in the attacks stage
                    row[f"{attack}_adversarial_accuracy"] = self.state["attacks"][attack]["adversarial_accuracy"]
                    row[f"{attack}_recovered_accuracy"] = accuracy(model, adversarial, self.y_attack)
                channel_rows.append(row)
            rows[name] = channel_rows
            self._save()

    def best_channels(self) -> dict[str, PerturbationChannel]:
        """Each channel at the strength that recovers most non-adaptive PGD examples (ties: less distortion).

        PGD, because the adaptive stage repeats PGD with the same budget against that setting.
        """
        best = {}
        for name, rows in self.state["sweep"].items():
            row = max(rows, key=lambda r: (r["pgd_recovered_accuracy"], -r["distortion"]))
            best[name] = make_channel(name, row["strength"])
        return best

    # -- adaptive attacks and transfer --------------------------------------------------------------
    def _adaptive(self, channel: PerturbationChannel) -> attacks.AttackResult:
        """Adaptive PGD against ``channel`` (deterministic: computed once per channel and process)."""
        key = (type(channel).__name__, channel.strength, channel.backward)
        if key not in self._adaptive_results:
            c = self.config
            self._adaptive_results[key] = attacks.adaptive_pgd(
                self.model, channel, self.x_attack, self.y_attack, c.epsilon, c.adaptive_steps,
                eot_draws=c.eot_draws, seed=c.seed,
            )  # fmt: skip
        return self._adaptive_results[key]

    def _defended_accuracy(self, channel: PerturbationChannel, x: torch.Tensor) -> float:
        channel = copy.deepcopy(channel)
        channel.generator = torch.Generator().manual_seed(self.config.seed + 1)
        return accuracy(defended(self.model, channel, self.config.vote_draws), x, self.y_attack)

    def stage_adaptive(self) -> None:
        rows = self.state.setdefault("adaptive", {})
        for name, channel in self._bar(list(self.best_channels().items()), "adaptive"):
            if name in rows:
                continue
            result = self._adaptive(channel)
            rows[name] = {
                "channel": name, "strength": channel.strength, "backward": channel.backward,
                "eot_draws": self.config.eot_draws if channel.random else 1,
                # the channel alone on the clean attacked images: the ceiling for any "recovered" share
                "clean_accuracy": self._defended_accuracy(channel, self.x_attack),
                "non_adaptive_pgd_recovered": self._defended_accuracy(channel, self.adversarial["pgd"]),
                "adaptive_accuracy": self._defended_accuracy(channel, result.adversarial),
                "delta_adv": result.delta_adv,
            }  # fmt: skip
            self._save()

    def stage_transfer(self) -> None:
        if "transfer" in self.state:
            return
        best = self.best_channels()
        source = best.get("laplace", make_channel("laplace", DEFAULT_SWEEPS["laplace"][1]))
        result = self._adaptive(source)
        rows = {"source": f"laplace scale={source.strength}", "delta_adv": result.delta_adv, "targets": {},
                "undefended_accuracy": accuracy(self.model, result.adversarial, self.y_attack)}  # fmt: skip
        for name, channel in best.items():
            rows["targets"][name] = {"strength": channel.strength,
                                     "accuracy": self._defended_accuracy(channel, result.adversarial)}  # fmt: skip
        self.state["transfer"] = rows
        self._save()

    # -- band-limited models -----------------------------------------------------------------------
    def _band_limited(self, rate: float) -> nn.Module:
        """The model converted to band-limited FFT convolutions at ``rate`` and fine-tuned (cached on disk)."""
        if rate == 0:
            return self.model
        c = self.config
        path = self.out / f"model_fft_{rate:g}.pt"
        network = convert_model(copy.deepcopy(self.model.network), domain="fft", compress_rate=rate)
        model = ImageClassifier(network)
        if not (path.exists() and self._load_weights(model, path, given=False)):
            self._log(f"fine-tuning the band-limited model at rate {rate:g} for {c.finetune_epochs} epoch(s)")
            train_on_tensors(model, self.x_train, self.y_train, c.finetune_epochs, 0.01, c.seed + 1)
            torch.save(model.state_dict(), path)
        return model.eval()

    def stage_blackbox(self) -> None:
        if "blackbox" in self.state:
            return
        c = self.config
        band_limited = self._band_limited(c.bl_rate)
        with torch.no_grad():
            both = (band_limited(self.x_attack).argmax(-1) == self.y_attack).nonzero().flatten()[: c.blackbox_images]
        x, y = self.x_attack[both], self.y_attack[both]
        result = {"rate": c.bl_rate, "images": len(x), "band_limited_clean_accuracy":
                  accuracy(band_limited, self.x_test, self.y_test), "attacks": {}}  # fmt: skip
        for attack in self._bar(attacks.BLACKBOX_ATTACKS, "black-box"):
            full = attacks.blackbox_min_l2(self.model, x, y, attack, steps=c.blackbox_steps).distortion
            limited = attacks.blackbox_min_l2(band_limited, x, y, attack, steps=c.blackbox_steps).distortion
            result["attacks"][attack] = {
                "full_median_l2": full.median().item(), "band_limited_median_l2": limited.median().item(),
                "full_success": torch.isfinite(full).float().mean().item(),
                "band_limited_success": torch.isfinite(limited).float().mean().item(),
                "share_band_limited_needs_more": (limited > full).float().mean().item(),
                "share_equal": (limited == full).float().mean().item(),
            }  # fmt: skip
        self.state["blackbox"] = result
        self._save()

    def stage_noise(self) -> None:
        c = self.config
        rows = self.state.setdefault("noise", {})
        for rate in self._bar(c.noise_rates, "noise"):
            key = f"{rate:g}"
            if key in rows:
                continue
            model = self._band_limited(rate)
            accuracies = {}
            for sigma in c.noise_sigmas:
                generator = torch.Generator().manual_seed(c.seed)
                noisy = (self.x_test + sigma * torch.randn(self.x_test.shape, generator=generator)).clamp(0, 1)
                accuracies[f"{sigma:g}"] = accuracy(model, noisy, self.y_test)
            rows[key] = accuracies
            self._save()

    def stage_instability(self) -> None:
        if "instability" in self.state:
            return
        c = self.config
        n = c.instability_images
        measures = {}
        for kind, x in (("natural", self.x_attack[:n]), ("pgd", self.adversarial["pgd"][:n])):
            measures[kind] = {
                "M1": instability.input_gradient_norm(self.model, x).tolist(),
                "M2": instability.hessian_top_eigenvalue(self.model, x, iterations=c.power_iterations,
                                                         seed=c.seed).tolist(),
            }  # fmt: skip
        self.state["instability"] = measures
        self._save()

    # -- driver -------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) every requested stage and write the outputs; returns the state.

        Raises:
            ValueError: ``config.out`` holds a study run with other settings (resuming would mix them).
        """
        config = json.loads(json.dumps(asdict(self.config), default=_json_default))
        previous = self.state.get("config")
        if previous is not None:
            changed = [k for k in config if k not in RESUMABLE_CHANGES and previous.get(k) != config[k]]
            if changed:
                raise ValueError(f"{self.out} holds a study with other settings ({', '.join(changed)}); "
                                 "use another --out or delete it")  # fmt: skip
        self.state["config"] = config
        self.load_data()
        for stage in STAGES:
            if stage in ("model", "attacks") or stage in self.config.stages:
                self._log(f"stage {stage}")
                wall, cpu = time.perf_counter(), time.process_time()
                getattr(self, f"stage_{stage}")()
                # Wall and CPU (all threads of this process) seconds; a resumed stage keeps its first timing.
                self.state.setdefault("seconds", {}).setdefault(
                    stage, {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
                )
                self._save()
        from . import report

        report.write_outputs(self.state, self.out)
        return self.state


def _check_adversarial(saved: Any) -> None:
    if not isinstance(saved, dict) or not all(torch.is_tensor(v) and v.isfinite().all() for v in saved.values()):
        raise ValueError("expected a table of finite adversarial images")


def _check_state(state: Any) -> None:
    if not isinstance(state, dict):
        raise ValueError(f"expected a table of stage results, got {type(state).__name__}")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
