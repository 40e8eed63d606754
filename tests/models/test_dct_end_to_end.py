"""JPEG files -> read_dct -> DCTCollate -> DCT-input model -> logits, with 4:2:0, 4:4:4 and greyscale
files in one batch."""

from __future__ import annotations

import io

import numpy as np
import pytest
import timm
import torch

import freqnets  # noqa: F401  (registers the models)

jpeg = pytest.importorskip("freqnets.jpeg", reason="freqnets.jpeg is not importable")
if not hasattr(jpeg, "read_dct") or not hasattr(jpeg, "DCTCollate"):
    pytest.skip("freqnets.jpeg.read_dct / DCTCollate not available yet", allow_module_level=True)
Image = pytest.importorskip("PIL.Image")


def _jpeg_files() -> list[bytes]:
    """Three 32x32 JPEGs of a smooth random image: 4:2:0, 4:4:4 and greyscale (Pillow's encoder)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((32, 32), Image.BILINEAR)
    files = []
    for mode, subsampling in (("RGB", 2), ("RGB", 0), ("L", 0)):
        buffer = io.BytesIO()
        image.convert(mode).save(buffer, format="JPEG", quality=85, subsampling=subsampling)
        files.append(buffer.getvalue())
    return files


@pytest.fixture(scope="module")
def samples():
    coeffs = [jpeg.read_dct(data) for data in _jpeg_files()]
    assert [c.subsampling for c in coeffs] == ["4:2:0", "4:4:4", "gray"]
    return [(c, label) for label, c in enumerate(coeffs)]


@pytest.mark.parametrize(
    ("name", "layout"),
    [("dct_resnet18_cifar", "stacked"), ("dct_resnet18_late_cifar", "planes"), ("dct_mg_resnet18_cifar", "planes")],
)
def test_jpeg_files_to_logits(samples, name, layout):
    collate = jpeg.DCTCollate(layout=layout, y_channels=32, c_channels=16)
    batch = collate(samples)
    model = timm.create_model(name, y_channels=32, c_channels=16).eval()
    if layout == "stacked":
        x = batch[0]
        assert x.shape == (3, 64, 4, 4)
        logits = model(x)
        singles = [model(collate([s])[0]) for s in samples]
    else:
        assert batch.y.shape == (3, 32, 4, 4) and batch.cbcr.shape == (3, 32, 2, 2)
        assert batch.cbcr[2].abs().max() == 0  # greyscale: neutral (zero) chroma, as documented
        logits = model(batch)
        singles = [model(collate([s])) for s in samples]
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    assert (batch[1] if layout == "stacked" else batch.labels).tolist() == [0, 1, 2]
    # Each file gives the same logits in the mixed batch as alone: no format leaks into another.
    torch.testing.assert_close(logits, torch.cat(singles), rtol=1e-4, atol=1e-4)


def test_training_step_on_read_coefficients(samples):
    model = timm.create_model("dct_mg_resnet18_cifar")
    batch = jpeg.DCTCollate(layout="planes")(samples)
    loss = torch.nn.functional.cross_entropy(model(batch), batch.labels)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_stored_cifar_statistics_are_those_of_the_bundled_data():
    """The cfg's CIFAR-10 DCT mean/std, recomputed from data/cifar10-mini.zip train/ as documented."""
    import zipfile
    from pathlib import Path

    from freqnets.models._dct_input import CIFAR10_DCT_MEAN, CIFAR10_DCT_STD

    path = Path(__file__).resolve().parents[2] / "data" / "cifar10-mini.zip"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        first = jpeg.read_dct(archive.read(names[0]))
        if first.backend == "python":
            pytest.skip("only the pure-Python JPEG reader is available: too slow for 2000 files")
        samples = [(jpeg.read_dct(archive.read(n)), 0) for n in names]
    batch = jpeg.DCTCollate(layout="planes")(samples)
    planes = [batch.y, batch.cbcr[:, :64], batch.cbcr[:, 64:]]
    values = [p.double().transpose(0, 1).reshape(64, -1) for p in planes]  # (frequency, every block)
    mean = torch.cat([v.mean(1) for v in values])
    std = torch.cat([v.std(1, unbiased=False) for v in values]).clamp_min(1.0)
    assert len(names) == 2000
    torch.testing.assert_close(mean, torch.tensor(CIFAR10_DCT_MEAN, dtype=torch.float64), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(std, torch.tensor(CIFAR10_DCT_STD, dtype=torch.float64), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "normalize_input"),
    [("dct_resnet18_cifar", True), ("dct_resnet18_late_cifar", False), ("dct_mg_resnet18_cifar", True)],
)
def test_dct_data_config_turns_jpeg_files_into_the_models_input(samples, name, normalize_input):
    """JPEG bytes -> read_dct -> DCTCollate(**dct_data_config(model)) -> model, without naming a layout or a
    channel count: the config says them, and normalises only where the model does not."""
    from freqnets.models import dct_data_config, example_input, input_spec

    torch.manual_seed(0)
    model = timm.create_model(name, y_channels=32, c_channels=16, normalize_input=normalize_input).eval()
    config = dct_data_config(model)
    assert (config["y_channels"], config["c_channels"]) == (32, 16)
    assert (config["normalize"] is None) == normalize_input
    batch = jpeg.DCTCollate(**config)(samples)
    inputs = (batch[0],) if config["layout"] == "stacked" else (batch.y, batch.cbcr)
    spec = input_spec(model)
    assert [tuple(t.shape[1:]) for t in inputs] == [shape for _, shape in spec.shapes]
    example = example_input(model, batch_size=3)
    assert [t.shape for t in (example if isinstance(example, tuple) else (example,))] == [t.shape for t in inputs]
    logits = model(*inputs)
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    if not normalize_input:
        # the collate normalised with the same statistics the normalising twin applies itself
        twin = timm.create_model(name, y_channels=32, c_channels=16).eval()
        twin.load_state_dict(model.state_dict(), strict=False)
        raw = jpeg.DCTCollate(**(config | dict(normalize=None)))(samples)
        torch.testing.assert_close(twin(raw.y, raw.cbcr), logits, rtol=1e-4, atol=1e-4)


def test_input_spec_describes_every_kind_of_input():
    from freqnets.models import dct_data_config, input_spec

    assert str(input_spec(timm.create_model("oct_resnet18_cifar"))) == "3x32x32"
    assert str(input_spec(timm.create_model("dct_resnet18", y_channels=8, c_channels=4))) == "dct stacked: x 16x28x28"
    late = timm.create_model("dct_resnet18_late")
    assert str(input_spec(late)) == "dct planes: y 64x28x28 + cbcr 128x14x14"
    with pytest.raises(TypeError, match="resolve_data_config"):
        dct_data_config(timm.create_model("mg_resnet18_cifar"))
