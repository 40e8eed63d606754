"""Attacks on classifiers of ``[0, 1]`` images: foolbox 3 wrappers and adaptive PGD (BPDA, EOT).

* :func:`pgd_linf`, :func:`carlini_wagner_l2`: foolbox's white-box attacks on the bare model
  (non-adaptive: they do not see any defense placed in front of it later).
* :func:`blackbox_min_l2`: foolbox's decision-based salt-and-pepper attack and its score-free
  repeated additive uniform noise, reduced to the smallest L2 perturbation that fools the model.
* :func:`adaptive_pgd`: our L-inf PGD against ``model(channel(x))``: it differentiates through the
  channel with the channel's exact gradient or straight-through (BPDA, Athalye et al., 2018), and
  for random channels averages the loss over ``eot_draws`` draws (expectation over
  transformation), all draws in one batched forward.

Every function takes images ``x`` ``(N, C, H, W)`` in ``[0, 1]`` and labels ``y`` ``(N,)``, and
returns an :class:`AttackResult`. foolbox is imported lazily (the ``robust`` extra).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.perturbation import PerturbationChannel


@dataclass
class AttackResult:
    """Adversarial images ``(N, C, H, W)`` and their per-image L2 distortion ``||x_adv - x||_2`` ``(N,)``.

    ``distortion`` is ``inf`` where the attack found no adversarial example (black-box attacks only).
    """

    adversarial: torch.Tensor
    distortion: torch.Tensor

    @property
    def delta_adv(self) -> float:
        """Mean L2 distortion over the images where the attack produced a finite perturbation."""
        finite = self.distortion[torch.isfinite(self.distortion)]
        return finite.mean().item() if len(finite) else float("nan")


def _check(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor of images (N, C, H, W), got {getattr(x, 'shape', x)!r}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError("x must hold images in [0, 1]")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"y must be a label tensor of shape ({x.shape[0]},), got {getattr(y, 'shape', y)!r}")


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _steps(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _result(x: torch.Tensor, adversarial: torch.Tensor) -> AttackResult:
    adversarial = adversarial.detach().to(x.dtype)
    return AttackResult(adversarial, (adversarial - x).flatten(1).norm(dim=1))


def _foolbox():
    try:
        import foolbox
    except ImportError as error:
        raise ImportError("the foolbox attacks need foolbox 3: pip install 'freqnets[robust]'") from error
    return foolbox


def _foolbox_model(model: nn.Module):
    return _foolbox().PyTorchModel(model.eval(), bounds=(0, 1))


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float = 8 / 255, steps: int = 20,
             rel_stepsize: float = 0.1) -> AttackResult:  # fmt: skip
    """foolbox ``LinfPGD`` with a random start: ``||x_adv - x||_inf <= epsilon``."""
    fb = _foolbox()

    _check(model, x, y)
    attack = fb.attacks.LinfPGD(rel_stepsize=rel_stepsize, steps=_steps(steps, "steps"))
    _, clipped, _ = attack(_foolbox_model(model), x, y, epsilons=_positive(epsilon, "epsilon"))
    return _result(x, clipped)


def carlini_wagner_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 100,
                      binary_search_steps: int = 5, stepsize: float = 0.01, confidence: float = 0.0,
                      initial_const: float = 0.01) -> AttackResult:  # fmt: skip
    """foolbox ``L2CarliniWagnerAttack``: the smallest L2 perturbation it finds (unbounded)."""
    fb = _foolbox()

    _check(model, x, y)
    attack = fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=_steps(binary_search_steps, "binary_search_steps"), steps=_steps(steps, "steps"),
        stepsize=_positive(stepsize, "stepsize"), confidence=confidence, initial_const=initial_const,
    )  # fmt: skip
    _, clipped, _ = attack(_foolbox_model(model), x, y, epsilons=None)
    return _result(x, clipped)


BLACKBOX_ATTACKS = ("salt_pepper", "uniform")


def blackbox_min_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str = "salt_pepper",
                    steps: int = 200, epsilons: tuple[float, ...] = (0.5, 1, 2, 3, 4, 6, 8, 12, 16),
                    repeats: int = 20) -> AttackResult:  # fmt: skip
    """The smallest L2 perturbation a foolbox black-box attack needs to fool ``model``.

    Args:
        attack: ``"salt_pepper"`` (``SaltAndPepperNoiseAttack``, decision-based: it grows the
            share of salt-and-pepper pixels for ``steps`` steps and keeps the smallest that
            fools) or ``"uniform"`` (``L2RepeatedAdditiveUniformNoiseAttack``: uniform noise
            scaled to each L2 norm of ``epsilons``, ``repeats`` tries each; the first norm that
            fools is the image's distortion).

    Returns:
        An :class:`AttackResult` whose ``distortion`` is ``inf`` where the attack failed.
    """
    fb = _foolbox()

    _check(model, x, y)
    fmodel = _foolbox_model(model)
    if attack == "salt_pepper":
        _, clipped, success = fb.attacks.SaltAndPepperNoiseAttack(steps=_steps(steps, "steps"))(
            fmodel, x, y, epsilons=None
        )
        result = _result(x, clipped)
    elif attack == "uniform":
        epsilons = sorted(_positive(e, "epsilons") for e in epsilons)
        attack_ = fb.attacks.L2RepeatedAdditiveUniformNoiseAttack(repeats=_steps(repeats, "repeats"))
        _, clipped, successes = attack_(fmodel, x, y, epsilons=epsilons)
        successes = torch.stack([torch.as_tensor(s) for s in successes])  # (E, N)
        first = torch.where(successes.any(0), successes.float().argmax(0), 0)
        success = successes.any(0)
        adversarial = torch.stack([clipped[int(e)][i] for i, e in enumerate(first)]) if len(x) else x.clone()
        result = _result(x, torch.where(success.view(-1, 1, 1, 1), adversarial, x))
    else:
        raise ValueError(f"attack must be one of {BLACKBOX_ATTACKS}, got {attack!r}")
    failed = ~torch.as_tensor(success, device=x.device)
    result.distortion = result.distortion.masked_fill(failed, float("inf"))
    return result


def adaptive_pgd(model: nn.Module, channel: PerturbationChannel, x: torch.Tensor, y: torch.Tensor,
                 epsilon: float = 8 / 255, steps: int = 20, step_size: float | None = None,
                 backward: str | None = None, eot_draws: int = 1, seed: int = 0,
                 random_start: bool = True) -> AttackResult:  # fmt: skip
    """L-inf PGD against the defended model ``model(channel(x))``, seeing the channel.

    Args:
        model: classifier of ``[0, 1]`` images, ``(N, C, H, W) -> (N, K)`` logits.
        channel: the defense; a copy is attacked, with ``backward`` (``"exact"``/``"bpda"``,
            ``None``: the channel's own choice).
        epsilon: L-inf radius.
        steps: PGD iterations (sign-gradient ascent on the cross-entropy, then projection
            onto the ``epsilon`` ball and ``[0, 1]``).
        step_size: per step (default ``2.5 * epsilon / steps``).
        eot_draws: for random channels, the loss is averaged over this many draws of the
            channel per step (EOT), computed as one forward of ``eot_draws * N`` images.
        seed: seeds the random start and the channel's draws (one generator: the start is drawn
            first, then each step's ``eot_draws * N`` images of noise).
        random_start: start from a uniform point of the ``epsilon`` ball (else from ``x``).

    Returns:
        An :class:`AttackResult` (the last iterate).
    """
    _check(model, x, y)
    epsilon = _positive(epsilon, "epsilon")
    steps = _steps(steps, "steps")
    eot_draws = _steps(eot_draws, "eot_draws")
    step_size = 2.5 * epsilon / steps if step_size is None else _positive(step_size, "step_size")
    attacked = copy.deepcopy(channel)
    attacked.backward = backward if backward is not None else channel.backward
    generator = torch.Generator(x.device).manual_seed(seed)
    attacked.generator = generator if attacked.random else None
    draws = eot_draws if attacked.random else 1
    model.eval()
    adversarial = x.detach().clone()
    if random_start:
        start = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        adversarial = (x + epsilon * start).clamp(0, 1)
    labels = y.repeat(draws)
    for _ in range(steps):
        adversarial.requires_grad_(True)
        batch = adversarial.repeat(draws, 1, 1, 1)
        loss = F.cross_entropy(model(attacked(batch)), labels)
        (gradient,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            adversarial = adversarial + step_size * torch.nan_to_num(gradient).sign()
            adversarial = torch.min(torch.max(adversarial, x - epsilon), x + epsilon).clamp(0, 1)
    return _result(x, adversarial)
