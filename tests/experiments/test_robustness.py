"""Attacks, instability measures and the robustness study against analytic and hand-computed references."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip("foolbox")

from freqnets.cli import main
from freqnets.experiments.data import DEFAULT_DATA
from freqnets.experiments.robustness import Study, StudyConfig, attacks, instability
from freqnets.experiments.robustness.study import QUICK
from freqnets.layers import ColorDepthChannel, FFTChannel, GaussianNoiseChannel
from freqnets.transforms import rfft_kept_mask


class Brightness(nn.Module):
    """Two classes by mean brightness: logits ``(-s, s)`` with ``s = k (mean(x) - 0.5)``.

    The smallest L2 perturbation that flips an image is ``|mean(x) - 0.5| * sqrt(D)`` (move
    every pixel equally), ``D = C * H * W`` (while no pixel hits the [0, 1] bounds).
    """

    def __init__(self, k: float = 40.0) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        s = self.k * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([-s, s], dim=1)


def _brightness_images(n=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    offset = torch.where(labels == 1, 0.06, -0.06).view(-1, 1, 1, 1)
    x = 0.5 + offset + 0.1 * (torch.rand(n, 3, 8, 8, generator=generator) - 0.5)
    return x, labels


def _minimal_l2(x):
    return (x.flatten(1).mean(1) - 0.5).abs() * math.sqrt(x[0].numel())


class SmallConvNet(nn.Module):
    def __init__(self, activation=nn.ReLU, seed=0, size=8):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), activation(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(6 * (size // 2) ** 2, 5))  # fmt: skip

    def forward(self, x):
        return self.body(x)


def test_pgd_linf_stays_in_ball_and_fools_the_brightness_model():
    model = Brightness()
    x, y = _brightness_images()
    result = attacks.pgd_linf(model, x, y, epsilon=0.08, steps=25)
    assert (result.adversarial - x).abs().max() <= 0.08 + 1e-6
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert (model(result.adversarial).argmax(1) != y).all()  # 0.08 > 0.06 + 0.05: every image flips
    torch.testing.assert_close(result.distortion, (result.adversarial - x).flatten(1).norm(dim=1))


def test_carlini_wagner_finds_near_minimal_l2():
    model = Brightness()
    x, y = _brightness_images()
    result = attacks.carlini_wagner_l2(model, x, y, steps=200, binary_search_steps=6, stepsize=0.01)
    optimal = _minimal_l2(x)
    assert (model(result.adversarial).argmax(1) != y).all()
    assert (result.distortion >= optimal - 1e-4).all()
    assert (result.distortion <= 1.15 * optimal).all()


@pytest.mark.parametrize("attack", ["salt_pepper", "uniform"])
def test_blackbox_distortions_never_beat_the_minimum(attack):
    model = Brightness()
    x, y = _brightness_images()
    result = attacks.blackbox_min_l2(model, x, y, attack, steps=100, epsilons=(0.5, 1, 2, 4, 8), repeats=10)
    finite = torch.isfinite(result.distortion)
    assert finite.any()
    assert (result.distortion[finite] >= _minimal_l2(x)[finite] - 1e-4).all()
    fooled = model(result.adversarial).argmax(1) != y
    assert torch.equal(fooled, finite)
    with pytest.raises(ValueError, match="attack"):
        attacks.blackbox_min_l2(model, x, y, "boundary")


def _one_step(channel, model, x, y, **options):
    return attacks.adaptive_pgd(model, channel, x, y, epsilon=0.03, steps=1, step_size=0.03, random_start=False,
                                **options).adversarial  # fmt: skip


def _expected_step(x, gradient):
    return (x + 0.03 * gradient.sign()).clamp(0, 1)


def test_adaptive_pgd_exact_gradient_through_fft_channel():
    model = SmallConvNet().double().eval()
    x, y = torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2])
    mask = rfft_kept_mask((8, 8), 0.6).numpy()

    def low_pass(a):
        return np.fft.irfft2(np.fft.rfft2(a, norm="ortho") * mask, s=(8, 8), norm="ortho")

    z = torch.from_numpy(low_pass(x.numpy())).requires_grad_()
    F.cross_entropy(model(z), y).backward()
    # The low-pass filter is self-adjoint: the input gradient is the low-passed gradient at C(x).
    expected = _expected_step(x, torch.from_numpy(low_pass(z.grad.numpy())))
    torch.testing.assert_close(_one_step(FFTChannel(0.6), model, x, y), expected)


def test_adaptive_pgd_bpda_uses_gradient_at_channel_output():
    model = SmallConvNet().double().eval()
    x, y = torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2])
    z = torch.from_numpy(np.round(x.numpy() * 7) / 7).requires_grad_()  # 3 bits
    F.cross_entropy(model(z), y).backward()
    torch.testing.assert_close(_one_step(ColorDepthChannel(3), model, x, y), _expected_step(x, z.grad))


def test_adaptive_pgd_eot_averages_gradients_over_draws():
    model = SmallConvNet(activation=nn.Tanh).double().eval()
    x, y = torch.rand(3, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2])
    draws = 5
    noise = torch.randn((draws * 3, 3, 8, 8), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    total = torch.zeros_like(x)
    for t in range(draws):  # reference: a Python loop over the same draws
        xt = x.clone().requires_grad_()
        F.cross_entropy(model((xt + 0.2 * noise[t * 3 : (t + 1) * 3]).clamp(0, 1)), y).backward()
        total += xt.grad
    step = _one_step(GaussianNoiseChannel(0.2), model, x, y, eot_draws=draws, seed=7)
    torch.testing.assert_close(step, _expected_step(x, total))


def test_adaptive_pgd_checks_arguments():
    model, x, y = Brightness(), *_brightness_images()
    with pytest.raises(ValueError, match="epsilon"):
        attacks.adaptive_pgd(model, FFTChannel(), x, y, epsilon=0)
    with pytest.raises(ValueError, match="eot_draws"):
        attacks.adaptive_pgd(model, FFTChannel(), x, y, eot_draws=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attacks.pgd_linf(model, x * 3, y)
    with pytest.raises(ValueError, match="y must"):
        attacks.pgd_linf(model, x, y[:2])


def test_input_gradient_norm_matches_per_image_autograd():
    model = SmallConvNet().double().eval()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 4])
    expected = []
    for i in range(4):
        xi = x[i : i + 1].clone().requires_grad_()
        F.cross_entropy(model(xi), labels[i : i + 1]).backward()
        expected.append(xi.grad.norm())
    torch.testing.assert_close(instability.input_gradient_norm(model, x, labels), torch.stack(expected))


def test_hessian_top_eigenvalue_matches_dense_hessian():
    model = SmallConvNet(activation=nn.Tanh, size=4).double().eval()
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    labels = torch.tensor([1, 2])
    estimate = instability.hessian_top_eigenvalue(model, x, labels, iterations=200)
    for i in range(2):
        def loss(image, i=i):
            return F.cross_entropy(model(image.unsqueeze(0)), labels[i : i + 1])

        hessian = torch.autograd.functional.hessian(loss, x[i], vectorize=True).reshape(48, 48).numpy()
        eigenvalues = np.linalg.eigvalsh(hessian)
        dominant = eigenvalues[np.abs(eigenvalues).argmax()]
        assert abs(estimate[i].item() - dominant) <= 1e-3 * abs(dominant)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    if not DEFAULT_DATA.exists():
        pytest.skip("bundled data/cifar10-mini.zip is absent")
    out = tmp_path_factory.mktemp("robustness")
    config = StudyConfig(
        out=out, train_per_class=20, test_per_class=8, epochs=1, attack_images=10, pgd_steps=3, cw_steps=5,
        cw_binary_steps=1, adaptive_steps=2, eot_draws=2, vote_draws=3, blackbox_images=6, blackbox_steps=10,
        finetune_epochs=1, noise_rates=[0.0, 0.5], noise_sigmas=[0.0, 0.1], instability_images=4,
        power_iterations=2, channels=["fft", "jpeg", "laplace"],
        sweeps={"fft": [0.5, 0.9], "jpeg": [75, 10], "laplace": [0.02, 0.1]},
    )  # fmt: skip
    torch.set_num_threads(1)
    state = Study(config, progress=False).run()
    return config, out, state


def test_study_writes_every_output(tiny_study):
    out = tiny_study[1]
    for name in ("results.json", "report.md", "sweep.csv", "adaptive.csv", "transfer.csv", "noise.csv",
                 "blackbox.csv", "instability.csv", "recovery_pgd.png", "recovery_cw.png", "noise.png",
                 "instability.png", "model.pt", "adversarial.pt"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert [r["strength"] for r in results["sweep"]["jpeg"]] == [75, 10]
    assert set(results["transfer"]["targets"]) == {"fft", "jpeg", "laplace"}
    assert all(0 <= row["clean_accuracy"] <= 1 for row in results["adaptive"].values())
    assert "| channel alone, clean |" in (out / "report.md").read_text()
    for rows in results["sweep"].values():
        for row in rows:
            assert 0 <= row["pgd_recovered_accuracy"] <= 1 and row["distortion"] > 0
    # FFT distortion grows with the rate.
    fft = results["sweep"]["fft"]
    assert fft[1]["distortion"] > fft[0]["distortion"]
    assert "| fft | rate=0.5 |" in (out / "report.md").read_text()


def test_study_resumes_without_recomputing(tiny_study, monkeypatch):
    config, _, state = tiny_study

    def fail(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    original_adaptive = attacks.adaptive_pgd

    monkeypatch.setattr(attacks, "pgd_linf", fail)
    monkeypatch.setattr(attacks, "adaptive_pgd", fail)
    monkeypatch.setattr(attacks, "blackbox_min_l2", fail)
    resumed = Study(config, progress=False).run()
    assert resumed["sweep"] == state["sweep"]
    assert resumed["adaptive"] == state["adaptive"]
    calls = []
    original = instability.input_gradient_norm
    monkeypatch.setattr(instability, "input_gradient_norm", lambda *a, **k: calls.append(1) or original(*a, **k))
    redone = Study(config, progress=False, redo=("instability",)).run()
    assert len(calls) == 2  # natural and PGD examples, measured again
    assert redone["instability"] == state["instability"]
    adaptive_calls = []
    monkeypatch.setattr(attacks, "adaptive_pgd", lambda *a, **k: adaptive_calls.append(1) or original_adaptive(*a, **k))
    again = Study(config, progress=False, redo=("adaptive", "transfer")).run()
    assert len(adaptive_calls) == len(config.channels)  # the transfer stage reuses the adaptive Laplace attack
    assert again["adaptive"] == state["adaptive"] and again["transfer"] == state["transfer"]
    with pytest.raises(ValueError, match="redo"):
        Study(config, progress=False, redo=("attacks",))
    with pytest.raises(ValueError, match="other settings"):
        Study(dataclasses.replace(config, epsilon=4 / 255), progress=False).run()


def test_config_and_cli_reject_bad_arguments(capsys):
    quick = StudyConfig(**QUICK)  # the --quick preset is a valid configuration
    assert quick.sweeps["jpeg"] == [90, 50, 10]
    with pytest.raises(ValueError, match="channels"):
        StudyConfig(channels=["blur"])
    with pytest.raises(ValueError, match="quality"):
        StudyConfig(sweeps={"jpeg": [0]}, channels=["jpeg"])
    with pytest.raises(ValueError, match="stages"):
        StudyConfig(stages=["everything"])
    assert main(["robustness", "--channels", "blur", "--quiet"]) == 2
    assert "channels must be among" in capsys.readouterr().err
