"""Dataset readers on tiny synthetic files written in the real formats (offline; never reads ../shared)."""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import (
    CIFAR,
    gtsrb_files,
    image_bytes,
    image_folder_files,
    ppm_bytes,
    rand_images,
    write_cifar_batches,
    write_idx,
    write_mnist,
    write_tree,
    write_zip,
)

import trojanscan.data.gtsrb as gtsrb_mod
from trojanscan.data.base import Dataset
from trojanscan.data.cifar import decode_image, load_cifar10, load_image_folder
from trojanscan.data.gtsrb import load_gtsrb
from trojanscan.data.mnist import load_mnist, read_idx_images, read_idx_labels
from trojanscan.data.npz import load_npz, save_npz
from trojanscan.data.registry import load_clean_data, load_dataset
from trojanscan.errors import DataFormatError, InvalidInputError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches into its own folder (never ~/.cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TROJANSCAN_CACHE", str(cache))
    return cache


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _chw(imgs: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) / 255, the readers' output convention."""
    return torch.from_numpy(imgs.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


# ---------------------------------------------------------------------------------------------
# MNIST IDX
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    imgs = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9, 8, 7], dtype=np.uint8)
    write_mnist(tmp_path, "train", imgs, labels, gz)
    write_mnist(tmp_path, "test", imgs[:3], labels[:3], gz)
    ds = load_mnist(tmp_path, "train")
    assert ds.x.shape == (7, 1, 28, 28) and ds.x.dtype == torch.float32
    assert ds.y.dtype == torch.int64 and ds.y.tolist() == labels.tolist()
    assert torch.equal(ds.x[:, 0], torch.from_numpy(imgs.astype(np.float32) / 255.0))
    assert ds.class_names == [str(i) for i in range(10)]
    assert len(load_mnist(tmp_path, "test")) == 3


def test_idx_gzip_detected_by_magic_not_name(tmp_path: Path, rng: np.random.Generator) -> None:
    imgs = rng.integers(0, 256, size=(2, 5, 4), dtype=np.uint8)
    p = write_idx(tmp_path / "images.bin", imgs, 0x803, gz=True)  # gzip content, no .gz suffix
    assert np.array_equal(read_idx_images(p), imgs)
    q = write_idx(tmp_path / "labels.idx.gz", np.array([3, 4], np.uint8), 0x801, gz=False)  # raw, .gz suffix
    out = read_idx_labels(q)
    assert out.dtype == np.int64 and out.tolist() == [3, 4]


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    imgs = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    raw = write_idx(tmp_path / "x", imgs, 0x803).read_bytes()[:-100]
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataFormatError, match="truncated") as e:
        read_idx_images(p)
    msg = str(e.value)
    assert str(p) in msg and str(16 + 3 * 28 * 28) in msg and str(len(raw)) in msg


def test_idx_truncated_gzip_stream(tmp_path: Path, rng: np.random.Generator) -> None:
    p = write_idx(tmp_path / "a.gz", rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8), 0x803, gz=True)
    p.write_bytes(p.read_bytes()[:-500])
    with pytest.raises(DataFormatError, match="gzip") as e:
        read_idx_images(p)
    assert str(p) in str(e.value)


def test_idx_wrong_magic(tmp_path: Path) -> None:
    p = write_idx(tmp_path / "labels", np.array([1, 2], np.uint8), 0x801)
    with pytest.raises(DataFormatError, match="labels file") as e:
        read_idx_images(p)
    assert "0x00000803" in str(e.value)
    junk = tmp_path / "junk"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataFormatError, match="not an MNIST IDX"):
        read_idx_labels(junk)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DataFormatError, match="too short"):
        read_idx_labels(tiny)


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    p = write_idx(tmp_path / "l", np.array([1, 2], np.uint8), 0x801)
    p.write_bytes(p.read_bytes() + b"\x00")
    with pytest.raises(DataFormatError, match="trailing"):
        read_idx_labels(p)


def test_mnist_count_mismatch_and_bad_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    imgs = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    write_mnist(tmp_path, "train", imgs, np.array([1, 2, 3], np.uint8), gz=True)
    with pytest.raises(DataFormatError, match="4 images but .* 3 labels"):
        load_mnist(tmp_path, "train")
    write_mnist(tmp_path, "train", imgs, np.array([1, 2, 3, 10], np.uint8), gz=True)
    with pytest.raises(DataFormatError, match="label 10 at index 3") as e:
        load_mnist(tmp_path, "train")
    assert "train-labels-idx1-ubyte.gz" in str(e.value)


def test_mnist_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="split"):
        load_mnist(tmp_path, "val")
    with pytest.raises(InvalidInputError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    with pytest.raises(InvalidInputError, match="not a folder"):
        load_mnist(tmp_path / "nope", "train")
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_idx_images(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# GTSRB
# ---------------------------------------------------------------------------------------------


def _expected_train(expected: dict[str, object]) -> tuple[torch.Tensor, list[int]]:
    xs = expected["train_x"]
    assert isinstance(xs, list)
    return _chw(np.stack(xs)), list(expected["train_y"])  # type: ignore[call-overload]


@pytest.mark.parametrize("layout", ["zip", "folder", "folder-no-prefix"])
def test_gtsrb_train_and_test(tmp_path: Path, rng: np.random.Generator, layout: str) -> None:
    train, test, exp = gtsrb_files(rng, {0: 4, 1: 3, 2: 5}, n_test=6, prefix="" if layout == "folder-no-prefix" else "GTSRB/")
    d = tmp_path / "gtsrb"
    d.mkdir()
    if layout == "zip":
        write_zip(d / "GTSRB_Final_Training_Images.zip", train)
        write_zip(d / "GTSRB_Final_Test_Images.zip", test)
    else:
        write_tree(d, train)
        write_tree(d, test)
    (d / "GT-final_test.csv").write_bytes(exp["test_csv"])  # type: ignore[arg-type]
    ds = load_gtsrb(d, "train", cache_dir=tmp_path / "c")
    ex, ey = _expected_train(exp)
    assert ds.x.shape == (12, 3, 32, 32) and ds.x.dtype == torch.float32
    assert ds.y.dtype == torch.int64 and ds.y.tolist() == ey
    assert torch.equal(ds.x, ex)
    assert len(ds.class_names) == 43 and ds.class_names[14] == "Stop"
    te = load_gtsrb(d, "test", cache_dir=tmp_path / "c")
    assert te.y.tolist() == exp["test_y"]
    assert torch.equal(te.x, _chw(exp["test_x"]))  # type: ignore[arg-type]


def test_gtsrb_resizes_with_bilinear(tmp_path: Path, rng: np.random.Generator) -> None:
    train, _, exp = gtsrb_files(rng, {0: 2, 5: 2}, n_test=0, sizes=(30, 41))
    write_zip(tmp_path / "GTSRB_Final_Training_Images.zip", train)
    ds = load_gtsrb(tmp_path, "train", size=16)
    assert ds.x.shape == (4, 3, 16, 16) and ds.y.tolist() == [0, 0, 5, 5]
    from PIL import Image

    first = np.asarray(Image.fromarray(exp["train_x"][0]).resize((16, 16), Image.Resampling.BILINEAR))  # type: ignore[index]
    assert torch.equal(ds.x[0], _chw(first[None])[0])
    ds32 = load_gtsrb(tmp_path, "train")  # mixed 30x30 and 41x41 -> 32x32
    assert ds32.x.shape == (4, 3, 32, 32)


def _gtsrb_folder(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, dict[str, bytes]]:
    train, test, exp = gtsrb_files(rng, {0: 3, 1: 3}, n_test=4)
    d = tmp_path / "g"
    write_tree(d, train)
    write_tree(d, test)
    return d, {"GT-final_test.csv": exp["test_csv"]}  # type: ignore[dict-item]


def test_gtsrb_label_disagrees_with_folder(tmp_path: Path, rng: np.random.Generator) -> None:
    d, _ = _gtsrb_folder(tmp_path, rng)
    csv = d / "GTSRB/Final_Training/Images/00001/GT-00001.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].rsplit(";", 1)[0] + ";7"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="ClassId 7 .* class folder 00001") as e:
        load_gtsrb(d, "train")
    assert "00001/00000_00001.ppm" in str(e.value)


def test_gtsrb_missing_class_csv(tmp_path: Path, rng: np.random.Generator) -> None:
    d, _ = _gtsrb_folder(tmp_path, rng)
    (d / "GTSRB/Final_Training/Images/00000/GT-00000.csv").unlink()
    with pytest.raises(DataFormatError, match="GT-00000.csv: missing"):
        load_gtsrb(d, "train")


def test_gtsrb_missing_test_csv(tmp_path: Path, rng: np.random.Generator) -> None:
    d, _ = _gtsrb_folder(tmp_path, rng)
    with pytest.raises(DataFormatError, match="GT-final_test.csv") as e:
        load_gtsrb(d, "test")
    assert "no labels" in str(e.value)


def test_gtsrb_test_csv_found_in_gt_zip(tmp_path: Path, rng: np.random.Generator) -> None:
    d, extra = _gtsrb_folder(tmp_path, rng)
    write_zip(d / "GTSRB_Final_Test_GT.zip", {"GT-final_test.csv": extra["GT-final_test.csv"]})
    assert len(load_gtsrb(d, "test")) == 4


def test_gtsrb_corrupt_ppm(tmp_path: Path, rng: np.random.Generator) -> None:
    train, _, _ = gtsrb_files(rng, {0: 3, 1: 2}, n_test=0)
    bad = "GTSRB/Final_Training/Images/00001/00000_00001.ppm"
    train[bad] = train[bad][:500]
    write_zip(tmp_path / "GTSRB_Final_Training_Images.zip", train)
    with pytest.raises(DataFormatError, match="truncated image") as e:
        load_gtsrb(tmp_path, "train")
    assert f"GTSRB_Final_Training_Images.zip:{bad}" in str(e.value)
    train[bad] = b"garbage, not an image at all"
    write_zip(tmp_path / "GTSRB_Final_Training_Images.zip", train)
    with pytest.raises(DataFormatError, match="not a readable image"):
        load_gtsrb(tmp_path, "train")


def test_gtsrb_zip_crc_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    train, _, _ = gtsrb_files(rng, {0: 2}, n_test=0)
    name = "GTSRB/Final_Training/Images/00000/00000_00001.ppm"
    z = tmp_path / "GTSRB_Final_Training_Images.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        for n, data in train.items():
            zf.writestr(n, data)
    blob = bytearray(z.read_bytes())
    pos = blob.index(train[name]) + len(train[name]) - 1  # the last pixel byte of that member
    blob[pos] ^= 0xFF
    z.write_bytes(bytes(blob))
    with pytest.raises(DataFormatError, match="CRC") as e:
        load_gtsrb(tmp_path, "train")
    assert name in str(e.value)


def test_gtsrb_unlisted_and_missing_files(tmp_path: Path, rng: np.random.Generator) -> None:
    d, _ = _gtsrb_folder(tmp_path, rng)
    extra = d / "GTSRB/Final_Training/Images/00000/99999_99999.ppm"
    extra.write_bytes(ppm_bytes(rand_images(rng, 1, 32, 32)[0]))
    with pytest.raises(DataFormatError, match="not listed in GT-00000.csv"):
        load_gtsrb(d, "train", use_cache=False)
    extra.unlink()
    (d / "GTSRB/Final_Training/Images/00000/00000_00000.ppm").unlink()
    with pytest.raises(DataFormatError, match="listed in GT-00000.csv but missing"):
        load_gtsrb(d, "train", use_cache=False)


def test_gtsrb_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="split"):
        load_gtsrb(tmp_path, "valid")
    with pytest.raises(InvalidInputError, match="size"):
        load_gtsrb(tmp_path, "train", size=0)
    with pytest.raises(InvalidInputError, match="GTSRB_Final_Training_Images.zip"):
        load_gtsrb(tmp_path, "train")
    (tmp_path / "GTSRB_Final_Training_Images.zip").write_bytes(b"PK not really")
    with pytest.raises(DataFormatError, match="not a readable zip"):
        load_gtsrb(tmp_path, "train", use_cache=False)


def test_cache_used_then_corrupt_cache_rebuilt(tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _, _ = gtsrb_files(rng, {0: 3, 3: 2}, n_test=0)
    write_zip(tmp_path / "GTSRB_Final_Training_Images.zip", train)
    cache = tmp_path / "mycache"
    first = load_gtsrb(tmp_path, "train", cache_dir=cache)
    entries = list(cache.glob("gtsrb-train-*.npz"))
    assert len(entries) == 1

    calls = []
    real = gtsrb_mod.decode_many

    def counting(*a: object, **k: object) -> np.ndarray:
        calls.append(1)
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(gtsrb_mod, "decode_many", counting)
    second = load_gtsrb(tmp_path, "train", cache_dir=cache)
    assert calls == [] and torch.equal(first.x, second.x) and torch.equal(first.y, second.y)

    entries[0].write_bytes(b"PK\x03\x04 this is not a valid npz")
    with pytest.warns(UserWarning, match="corrupt data cache"):
        third = load_gtsrb(tmp_path, "train", cache_dir=cache)
    assert calls == [1] and torch.equal(first.x, third.x)
    fourth = load_gtsrb(tmp_path, "train", cache_dir=cache)  # the rebuilt entry is valid again
    assert calls == [1] and torch.equal(first.x, fourth.x)
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_cache_key_follows_source_and_size(tmp_path: Path, rng: np.random.Generator, _private_cache: Path) -> None:
    train, _, _ = gtsrb_files(rng, {0: 2}, n_test=0)
    z = write_zip(tmp_path / "GTSRB_Final_Training_Images.zip", train)
    a = load_gtsrb(tmp_path, "train")  # default cache dir: $TROJANSCAN_CACHE
    assert len(list(_private_cache.glob("gtsrb-train-*.npz"))) == 1
    assert load_gtsrb(tmp_path, "train", size=8).x.shape[-1] == 8
    assert len(list(_private_cache.glob("gtsrb-train-*.npz"))) == 2
    name = "GTSRB/Final_Training/Images/00000/00000_00000.ppm"
    new = rand_images(rng, 1, 32, 32)[0]
    train[name] = ppm_bytes(new)
    write_zip(z, train)
    os.utime(z, ns=(z.stat().st_atime_ns, z.stat().st_mtime_ns + 10**9))
    b = load_gtsrb(tmp_path, "train")
    assert not torch.equal(a.x, b.x) and torch.equal(b.x[0], _chw(new[None])[0])


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches
# ---------------------------------------------------------------------------------------------


def test_cifar_python_batches(tmp_path: Path, rng: np.random.Generator) -> None:
    content = write_cifar_batches(tmp_path, rng, n=3)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        ds = load_cifar10(root, "train")
        assert ds.x.shape == (15, 3, 32, 32) and ds.y.dtype == torch.int64
        data = np.concatenate([content[f"data_batch_{i}"][0] for i in range(1, 6)])
        assert torch.equal(ds.x, torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255))
        assert ds.y.tolist() == sum((content[f"data_batch_{i}"][1] for i in range(1, 6)), [])
        assert ds.class_names == CIFAR
    te = load_cifar10(tmp_path, "test")
    assert te.y.tolist() == content["test_batch"][1]


def test_cifar_python_tarball(tmp_path: Path, rng: np.random.Generator) -> None:
    src = tmp_path / "src"
    content = write_cifar_batches(src, rng, n=2)
    tgz = tmp_path / "d" / "cifar-10-python.tar.gz"
    tgz.parent.mkdir()
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    te = load_cifar10(tmp_path / "d", "test")
    assert te.y.tolist() == content["test_batch"][1]
    assert len(load_cifar10(tgz, "train")) == 10


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_cifar_refuses_malicious_pickle(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar_batches(tmp_path, rng, n=2)
    marker = tmp_path / "pwned"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Evil(marker)}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DataFormatError, match="refusing") as e:
        load_cifar10(tmp_path, "test")
    assert "test_batch" in str(e.value) and "system" in str(e.value)
    assert not marker.exists()


def test_cifar_accepts_protocol5_pickles(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar_batches(tmp_path, rng, n=2)
    data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
    blob = pickle.dumps({"data": data, "labels": np.array([1, 2])}, protocol=5)  # str keys, ndarray labels
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(blob)
    te = load_cifar10(tmp_path, "test")
    assert te.y.tolist() == [1, 2] and torch.equal(te.x.flatten(1), torch.from_numpy(data.astype(np.float32) / 255))


def test_cifar_batch_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    write_cifar_batches(tmp_path, rng, n=2)
    d = tmp_path / "cifar-10-batches-py"
    (d / "data_batch_3").unlink()
    with pytest.raises(DataFormatError, match="missing data_batch_3"):
        load_cifar10(tmp_path, "train")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, protocol=2))
    with pytest.raises(DataFormatError, match="0..9"):
        load_cifar10(tmp_path, "test")
    (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataFormatError, match=r"\(N, 3072\)"):
        load_cifar10(tmp_path, "test")
    (d / "test_batch").write_bytes(b"\x80\x02}q\x00")  # truncated pickle
    with pytest.raises(DataFormatError, match="test_batch: not a readable CIFAR-10 batch"):
        load_cifar10(tmp_path, "test")


# ---------------------------------------------------------------------------------------------
# ImageFolder (CIFAR-10 JPEG/PNG copies and generic folders)
# ---------------------------------------------------------------------------------------------


def test_cifar_image_folder_zip_with_prefix(tmp_path: Path, rng: np.random.Generator) -> None:
    files, exp = image_folder_files(rng, CIFAR, 2, ["train", "test"], prefix="CIFAR-10-images/", fmt="PNG")
    write_zip(tmp_path / "CIFAR-10-images.zip", files)
    for split in ("train", "test"):
        ds = load_cifar10(tmp_path, split)
        assert ds.x.shape == (20, 3, 32, 32) and ds.class_names == CIFAR
        assert ds.y.tolist() == exp[split][1]
        assert torch.equal(ds.x, _chw(exp[split][0]))


def test_cifar_image_folder_jpeg_dir(tmp_path: Path, rng: np.random.Generator) -> None:
    files, exp = image_folder_files(rng, CIFAR, 1, ["test"], fmt="JPEG")
    write_tree(tmp_path, files)
    ds = load_cifar10(tmp_path, "test")
    assert ds.x.shape == (10, 3, 32, 32) and ds.y.tolist() == list(range(10))
    from PIL import Image

    decoded = np.stack([np.asarray(Image.open(tmp_path / "test" / c / "0000.jpg")) for c in CIFAR])
    assert torch.equal(ds.x, _chw(decoded))  # the JPEG is lossy: compare with PIL's decoding of the same file
    assert float((ds.x - _chw(exp["test"][0])).abs().mean()) < 0.3


def test_cifar_image_folder_wrong_classes(tmp_path: Path, rng: np.random.Generator) -> None:
    files, _ = image_folder_files(rng, ["cats", "dogs"], 1, ["train"])
    write_zip(tmp_path / "CIFAR-10-images.zip", files)
    with pytest.raises(DataFormatError, match="not the ten CIFAR-10 classes"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_cifar10(tmp_path / "nope", "train")


def test_image_folder_generic(tmp_path: Path, rng: np.random.Generator) -> None:
    files, exp = image_folder_files(rng, ["b", "a", "c10", "c9"], 2, [None], fmt="PNG", size=8)
    write_tree(tmp_path / "f", files)
    ds = load_image_folder(tmp_path / "f")
    assert ds.class_names == ["a", "b", "c9", "c10"]  # sorted, natural order
    order = {"a": 1, "b": 0, "c9": 3, "c10": 2}  # index into the writer's class list
    expected = np.concatenate([exp[None][0][2 * order[c] : 2 * order[c] + 2] for c in ds.class_names])
    assert ds.y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(ds.x, _chw(expected))
    assert load_image_folder(tmp_path / "f", size=4).x.shape == (8, 3, 4, 4)


def test_image_folder_flat_grayscale_and_split(tmp_path: Path, rng: np.random.Generator) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    imgs = rand_images(rng, 3, 6, 6, 1)
    for i, img in enumerate(imgs):
        (flat / f"{i}.png").write_bytes(image_bytes(img, "PNG"))
    (flat / "notes.txt").write_text("ignored")
    ds = load_image_folder(flat)
    assert ds.x.shape == (3, 1, 6, 6) and ds.y.tolist() == [-1, -1, -1] and ds.class_names == []
    assert torch.equal(ds.x, _chw(imgs))

    files, _ = image_folder_files(rng, ["x", "y"], 1, ["train", "test"], prefix="top/")
    write_zip(tmp_path / "s.zip", files)
    with pytest.raises(DataFormatError, match="pass split="):
        load_image_folder(tmp_path / "s.zip")
    assert load_image_folder(tmp_path / "s.zip", split="test").y.tolist() == [0, 1]


def test_image_folder_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    d = tmp_path / "d"
    (d / "a").mkdir(parents=True)
    (d / "a" / "0.png").write_bytes(image_bytes(rand_images(rng, 1, 8, 8)[0], "PNG"))
    (d / "a" / "1.png").write_bytes(image_bytes(rand_images(rng, 1, 9, 9)[0], "PNG"))
    with pytest.raises(DataFormatError, match="pass size=") as e:
        load_image_folder(d)
    assert "1.png" in str(e.value)
    (d / "a" / "1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataFormatError, match="not a readable image") as e:
        load_image_folder(d, use_cache=False)
    assert str(d / "a" / "1.png") in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no image files"):
        load_image_folder(empty)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_image_folder(tmp_path / "missing")


def test_decode_image_pnm_variants() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    pgm = b"P5 4 3 255\n" + gray.tobytes()
    assert np.array_equal(decode_image(pgm, "g.pgm")[:, :, 0], gray)
    assert decode_image(pgm, "g.pgm", mode="RGB").shape == (3, 4, 3)
    rgb = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    assert np.array_equal(decode_image(ppm_bytes(rgb), "c.ppm"), rgb)
    assert np.array_equal(decode_image(image_bytes(rgb, "PNG"), "c.png"), rgb)


# ---------------------------------------------------------------------------------------------
# .npz clean-sample files
# ---------------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path) -> None:
    x = torch.rand(5, 3, 8, 8)
    ds = Dataset(x, torch.arange(5), ["a", "b", "c", "d", "e"], "s")
    p = save_npz(tmp_path / "clean.npz", ds)
    back = load_npz(p)
    assert torch.equal(back.x, x) and torch.equal(back.y, ds.y) and back.class_names == ds.class_names
    assert [f.name for f in tmp_path.iterdir()] == ["clean.npz"]  # no temporary left behind


def test_npz_optional_y_and_float64(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((4, 1, 5, 5))
    np.savez(tmp_path / "a.npz", x=x)
    ds = load_npz(tmp_path / "a.npz")
    assert ds.x.dtype == torch.float32 and ds.y.tolist() == [-1] * 4
    assert torch.allclose(ds.x, torch.from_numpy(x).float())


@pytest.mark.parametrize(
    ("arrays", "pattern"),
    [
        ({"x": np.zeros((2, 1, 4, 4), np.uint8)}, "divide|/ 255"),
        ({"x": np.full((2, 1, 4, 4), np.nan, np.float32)}, "NaN"),
        ({"x": np.full((2, 1, 4, 4), 2.0, np.float32)}, r"\[0, 1\]"),
        ({"x": np.zeros((0, 1, 4, 4), np.float32)}, "no images"),
        ({"x": np.zeros((2, 4, 4), np.float32)}, "4 dimensions"),
        ({"x": np.zeros((2, 8, 8, 3), np.float32)}, "channels-last"),
        ({"images": np.zeros((2, 1, 4, 4), np.float32)}, "no array named 'x'"),
        ({"x": np.zeros((2, 1, 4, 4), np.float32), "y": np.zeros(3, np.int64)}, r"shape \(2,\)"),
        ({"x": np.zeros((2, 1, 4, 4), np.float32), "y": np.zeros(2, np.float32)}, "integers"),
        ({"x": np.zeros((2, 1, 4, 4), np.float32), "y": np.array([0, -5])}, ">= 0"),
        ({"x": np.array([None, 1], dtype=object)}, "object arrays"),
    ],
)
def test_npz_bad_contents(tmp_path: Path, arrays: dict[str, np.ndarray], pattern: str) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataFormatError, match=pattern) as e:
        load_npz(p)
    assert str(p) in str(e.value)


def test_npz_broken_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty"):
        load_npz(empty)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"hello world, not a zip")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        load_npz(junk)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(DataFormatError, match="single .npy"):
        load_npz(npy)
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def test_registry_load_dataset(tmp_path: Path, rng: np.random.Generator) -> None:
    write_mnist(tmp_path, "test", rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8), np.array([4, 5], np.uint8), gz=True)
    ds = load_dataset("mnist", tmp_path, "test")
    assert ds.y.tolist() == [4, 5] and ds.input_shape == (1, 28, 28)
    with pytest.raises(InvalidInputError, match="cifar10, gtsrb, mnist"):
        load_dataset("imagenet", tmp_path, "train")
    with pytest.raises(InvalidInputError, match="nowhere"):
        load_dataset("gtsrb", tmp_path / "nowhere", "train")
    with pytest.raises(InvalidInputError, match="unknown option"):
        load_dataset("mnist", tmp_path, "test", size=3)


def test_registry_load_clean_data(tmp_path: Path, rng: np.random.Generator) -> None:
    save_npz(tmp_path / "c.npz", Dataset(torch.rand(2, 1, 4, 4), torch.tensor([0, 1])))
    assert len(load_clean_data(tmp_path / "c.npz")) == 2
    files, _ = image_folder_files(rng, ["a", "b"], 2, [None], size=8)
    write_tree(tmp_path / "imgs", files)
    assert load_clean_data(tmp_path / "imgs").y.tolist() == [0, 0, 1, 1]
    write_zip(tmp_path / "imgs.zip", files)
    assert load_clean_data(tmp_path / "imgs.zip").x.shape == (4, 3, 8, 8)
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="unsupported"):
        load_clean_data(tmp_path / "m.txt")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_clean_data(tmp_path / "none.npz")


def test_clean_data_from_a_dataset_folder_is_its_test_split(tmp_path: Path, rng: np.random.Generator) -> None:
    """``--data DIR`` with a dataset in its own layout: MNIST IDX, GTSRB's release, CIFAR-10 batches; split trees."""
    from trojanscan.data.registry import dataset_folder_kind

    mn = tmp_path / "mnist"
    mn.mkdir()
    write_mnist(mn, "train", rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8), np.array([1, 2, 3], np.uint8), gz=True)
    write_mnist(mn, "test", rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8), np.array([7, 8], np.uint8), gz=True)
    assert dataset_folder_kind(mn) == "mnist"
    ds = load_clean_data(mn)
    assert ds.y.tolist() == [7, 8] and ds.input_shape == (1, 28, 28)

    gt = tmp_path / "gtsrb"
    gt.mkdir()
    train, test, exp = gtsrb_files(rng, {0: 2, 3: 2}, n_test=3, prefix="GTSRB/")
    write_zip(gt / "GTSRB_Final_Training_Images.zip", train)
    write_zip(gt / "GTSRB_Final_Test_Images.zip", test)
    (gt / "GT-final_test.csv").write_bytes(exp["test_csv"])  # type: ignore[arg-type]
    assert dataset_folder_kind(gt) == "gtsrb"
    assert load_clean_data(gt, cache_dir=tmp_path / "c").y.tolist() == exp["test_y"]

    cf = tmp_path / "cifar"
    content = write_cifar_batches(cf, rng, n=2)
    assert dataset_folder_kind(cf) == "cifar10"
    assert load_clean_data(cf).y.tolist() == content["test_batch"][1]

    # an image tree with train/ and test/ folders: the test split, not two classes called "test" and "train"
    files, _ = image_folder_files(rng, ["x", "y"], 1, ["train", "test"], prefix="top/")
    write_zip(tmp_path / "s.zip", files)
    assert dataset_folder_kind(tmp_path / "s.zip") is None
    s = load_clean_data(tmp_path / "s.zip")
    assert s.y.tolist() == [0, 1] and s.class_names == ["x", "y"]
    assert load_clean_data(tmp_path / "s.zip", split="train").y.tolist() == [0, 1]

    # a plain folder of class folders is no dataset folder; split= does not apply to a dataset folder
    assert dataset_folder_kind(tmp_path / "gtsrb" / "nothing") is None
    with pytest.raises(InvalidInputError, match="test split"):
        load_clean_data(mn, split="train")
    # an MNIST folder without the test files is not taken for one (it is read as an image folder and refused)
    only_train = tmp_path / "mnist_train_only"
    only_train.mkdir()
    write_mnist(only_train, "train", rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8), np.array([1, 2], np.uint8), gz=False)
    assert dataset_folder_kind(only_train) is None
    with pytest.raises(DataFormatError, match="no image files"):
        load_clean_data(only_train)


def test_fit_images_converts_channels_and_resizes() -> None:
    """fit_images: 3 -> 1 channels by luma, 1 -> 3 by repetition, bilinear resize in [0, 1], labels kept; a shape that
    already fits is returned as it is; other channel counts are refused."""
    from trojanscan.data.base import LUMA, Dataset, fit_images

    g = torch.Generator().manual_seed(0)
    rgb = Dataset(torch.rand(5, 3, 12, 10, generator=g), torch.arange(5), [], "rgb")
    same, done = fit_images(rgb, (3, 12, 10))
    assert same is rgb and done == []
    gray, done = fit_images(rgb, (1, 12, 10))
    assert done == ["made grayscale (luma)"] and torch.equal(gray.y, rgb.y)
    assert torch.allclose(gray.x[:, 0], sum(w * rgb.x[:, i] for i, w in enumerate(LUMA)))
    flat = Dataset(torch.full((2, 1, 7, 7), 0.25), torch.zeros(2, dtype=torch.int64), [], "flat")
    big, done = fit_images(flat, (3, 20, 16))
    assert done == ["grayscale repeated over 3 channels", "resized from 7x7 to 16x20 (bilinear)"]
    assert big.input_shape == (3, 20, 16) and torch.allclose(big.x, torch.tensor(0.25))  # a flat image stays flat
    edge = Dataset(torch.zeros(1, 1, 8, 8).index_fill_(3, torch.arange(4), 1.0), torch.zeros(1, dtype=torch.int64))
    small, _ = fit_images(edge, (1, 4, 4))
    assert float(small.x.min()) >= 0.0 and float(small.x.max()) <= 1.0 and small.x[0, 0, 0, 0] > small.x[0, 0, 0, 3]
    with pytest.raises(InvalidInputError, match="only 1 <-> 3 channels"):
        fit_images(rgb, (4, 12, 10))
