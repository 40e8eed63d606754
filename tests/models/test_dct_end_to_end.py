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
