"""JpegFolderDataset (folder and zip) against torchvision's ImageFolder, EncodedImageDataset, the CIFAR-10 builder."""

from __future__ import annotations

import importlib.util
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from freqnets.jpeg import DCTCollate, JpegError, encode_dct, quant_tables_for_quality, read_dct
from freqnets.jpeg.datasets import EncodedImageDataset, JpegFolderDataset

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "data" / "cifar10-mini.zip"


def load_script():
    spec = importlib.util.spec_from_file_location("make_cifar10_jpeg", ROOT / "scripts" / "make_cifar10_jpeg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg(seed: int, size=(16, 24), mode="RGB") -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (*size, 3) if mode == "RGB" else size, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


TREE = {
    "split/dog/b.jpg": 1, "split/dog/a.JPEG": 2, "split/ant/z.jpg": 3, "split/ant/sub/a.jpg": 4,
    "split/ant/m.jpeg": 5, "split/cat/x.jpg": 6, "split/cat/notes.txt": None,
}  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    with zipfile.ZipFile(root / "tree.zip", "w") as archive:
        for name, seed in TREE.items():
            payload = b"not an image" if seed is None else jpeg(seed, mode="L" if seed == 6 else "RGB")
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(payload)
            archive.writestr(name, payload)
    return root


def test_folder_matches_torchvision_imagefolder(tree):
    ours = JpegFolderDataset(tree, split="split")
    theirs = ImageFolder(str(tree / "split"), is_valid_file=lambda p: p.lower().endswith((".jpg", ".jpeg")))
    assert ours.classes == theirs.classes and ours.class_to_idx == theirs.class_to_idx
    assert [Path(p) for p, _ in ours.samples] == [Path(p) for p, _ in theirs.samples]
    assert ours.targets == theirs.targets and len(ours) == 6
    coeffs, label = ours[0]
    expected = read_dct((tree / ours.samples[0][0]).read_bytes())
    assert label == theirs.targets[0] and torch.equal(coeffs.y, expected.y)
    assert ours[ours.targets.index(ours.class_to_idx["cat"])][0].cb is None  # the greyscale file


def test_zip_equals_folder(tree):
    folder = JpegFolderDataset(tree / "split")
    archive = JpegFolderDataset(tree / "tree.zip", split="split", order="zigzag")
    assert archive.classes == folder.classes and archive.targets == folder.targets
    for i in range(len(folder)):
        (a, la), (b, lb) = folder[i], archive[i]
        assert la == lb and b.order == "zigzag"
        assert torch.equal(a.y, b.to_order("natural").y)


def test_crop_is_passed_to_read_dct(tree):
    cropped = JpegFolderDataset(tree / "split", crop=(1, 2))
    for i in range(len(cropped)):
        coeffs, _ = cropped[i]
        expected = read_dct((tree / cropped.samples[i][0]).read_bytes(), crop=(1, 2))
        assert coeffs.y.shape[-2:] == (1, 2) and torch.equal(coeffs.y, expected.y) and coeffs.size == expected.size


def test_zip_handle_is_per_process_and_loader_workers_agree(tree):
    dataset = JpegFolderDataset(tree / "tree.zip", split="split", target_transform=int)
    dataset[0]
    assert dataset._zip is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._zip is None and torch.equal(clone[1][0].y, dataset[1][0].y)

    def batches(workers: int):
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=3, num_workers=workers, collate_fn=DCTCollate(grid=(2, 3), c_channels=8)
        )
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 2
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a.y, b.y) and torch.equal(a.cbcr, b.cbcr) and torch.equal(a.labels, b.labels)


def test_bad_sources_raise(tree, tmp_path):
    with pytest.raises(FileNotFoundError):
        JpegFolderDataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        JpegFolderDataset(tree / "tree.zip", split="val")
    with pytest.raises(FileNotFoundError):
        JpegFolderDataset(tree, split="val")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(ValueError, match="no JPEG files"):
        JpegFolderDataset(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        JpegFolderDataset(tmp_path / "flat")
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="zip"):
        JpegFolderDataset(tmp_path / "fake.zip")
    (tmp_path / "broken" / "cls").mkdir(parents=True)
    (tmp_path / "broken" / "cls" / "bad.jpg").write_bytes(jpeg(1)[:50])
    with pytest.raises(JpegError, match=r"bad\.jpg"):
        JpegFolderDataset(tmp_path / "broken")[0]


def test_encoded_image_dataset():
    rng = np.random.default_rng(0)
    images = [(Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), i % 3) for i in range(4)]
    images.append((torch.rand(3, 24, 40), 7))
    dataset = EncodedImageDataset(images, quality=60, subsampling="4:4:4", target_transform=lambda t: t + 1)
    assert len(dataset) == 5
    for (image, label), (coeffs, target) in zip(images, dataset, strict=True):
        expected = encode_dct(image, quality=60, subsampling="4:4:4")
        assert target == label + 1 and torch.equal(coeffs.y, expected.y) and torch.equal(coeffs.cr, expected.cr)
    with pytest.raises(ValueError, match="quality"):
        EncodedImageDataset(images, quality=0)


@pytest.mark.skipif(not BUNDLED.exists(), reason="bundled data missing")
def test_bundled_cifar10_mini():
    train = JpegFolderDataset(BUNDLED, split="train")
    test = JpegFolderDataset(BUNDLED, split="test")
    assert train.classes == list(load_script().CIFAR10_CLASSES) == test.classes
    assert len(train) == 2000 and len(test) == 500
    assert np.bincount(train.targets).tolist() == [200] * 10 and np.bincount(test.targets).tolist() == [50] * 10
    coeffs, _ = train[123]
    assert coeffs.size == (32, 32) and coeffs.subsampling == "4:2:0"
    torch.testing.assert_close(coeffs.quant_tables, quant_tables_for_quality(75)[[0, 1, 1]])


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10 (no download): 12 random 32x32 images, 10 classes."""

    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root, train=True, download=False):
        rng = np.random.default_rng(0 if train else 1)
        count = 12 if train else 5
        self.items = [
            (Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), int(i * 7 % 3)) for i in range(count)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def __iter__(self):
        return iter(self.items)


def test_make_cifar10_jpeg_on_a_fake_cifar(tmp_path, monkeypatch):
    script = load_script()
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    script.main(["--root", str(tmp_path / "dl"), "--out", str(tmp_path / "out")])
    first = (tmp_path / "out" / "train.zip").read_bytes()
    script.main(["--root", str(tmp_path / "dl"), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "train.zip").read_bytes() == first  # reproducible bytes
    with zipfile.ZipFile(tmp_path / "out" / "train.zip") as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert "train/bird/0000.jpg" in archive.namelist()
    fake = FakeCIFAR10(None, train=True)
    train = JpegFolderDataset(tmp_path / "out" / "train.zip", split="train")
    assert len(train) == 12 and train.classes == ["airplane", "automobile", "bird"]  # classes with images
    assert len(JpegFolderDataset(tmp_path / "out" / "test.zip", split="test")) == 5
    first_bird = next(i for i, (_, label) in enumerate(fake.items) if label == 2)
    coeffs = train[train.samples.index(("train/bird/0000.jpg", 2))][0]
    assert coeffs.subsampling == "4:2:0" and coeffs.size == (32, 32)
    torch.testing.assert_close(coeffs.quant_tables, quant_tables_for_quality(75)[[0, 1, 1]])
    # the same image encoded by freqnets: within one quantisation step nearly everywhere
    ours = encode_dct(fake.items[first_bird][0], quality=75)
    same = ((ours.y - coeffs.y) / ours.quant_tables[0].view(-1, 1, 1)).round() == 0
    assert same.double().mean() > 0.9
