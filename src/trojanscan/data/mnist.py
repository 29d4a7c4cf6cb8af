"""MNIST reader: the IDX files of yann.lecun.com (gzipped or not), as float32 (N, 1, 28, 28) in [0, 1].

IDX format: a big-endian header ``00 00 <dtype> <ndim>`` (``0x00000803`` images: unsigned bytes, 3
dimensions; ``0x00000801`` labels: unsigned bytes, 1 dimension), then ``ndim`` big-endian uint32
sizes, then the data. Gzip is detected from the magic bytes ``1f 8b``, not the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from trojanscan.data.base import Dataset
from trojanscan.errors import DataFormatError, InvalidInputError

__all__ = ["MNIST_FILES", "load_mnist", "read_idx_images", "read_idx_labels"]

PathLike = str | os.PathLike[str]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
#: Standard file stems per split: (images, labels).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_KIND = {IMAGES_MAGIC: "an images file", LABELS_MAGIC: "a labels file"}


def _read_bytes(path: PathLike) -> tuple[Path, bytes]:
    """Read a file, gunzipping it if it starts with the gzip magic ``1f 8b``."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"IDX file {str(p)!r} does not exist; check the path.")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataFormatError(f"{p}: corrupt or truncated gzip stream ({exc}); download the file again.") from exc
    return p, raw


def _read_idx(path: PathLike, magic: int, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX array with the given magic number and number of dimensions."""
    p, raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataFormatError(f"{p}: only {len(raw)} bytes; too short for an IDX header. Download the file again.")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        what = _KIND.get(got)
        hint = f" It is {what}: check the file name." if what else " It is not an MNIST IDX file."
        raise DataFormatError(f"{p}: IDX magic 0x{got:08X}, expected 0x{magic:08X} ({_KIND[magic]}).{hint}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{p}: truncated IDX header: {len(raw)} bytes, expected at least {header}.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(dim == 0 for dim in dims[1:]):
        raise DataFormatError(f"{p}: IDX dimensions {dims} contain 0; the header is corrupt.")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataFormatError(
            f"{p}: {state}: dimensions {dims} need {expected} bytes (uncompressed) but the file holds {len(raw)}. "
            "Download the file again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_images(path: PathLike) -> np.ndarray:
    """Read an IDX images file (magic 0x00000803) into uint8 of shape (N, H, W)."""
    return _read_idx(path, IMAGES_MAGIC, 3)


def read_idx_labels(path: PathLike) -> np.ndarray:
    """Read an IDX labels file (magic 0x00000801) into int64 of shape (N,)."""
    return _read_idx(path, LABELS_MAGIC, 1).astype(np.int64)


def _find(data_dir: Path, stem: str) -> Path:
    """Locate ``stem`` (or ``stem.gz``, or the ``name.idxN-ubyte`` spelling) in the usual folders."""
    alt = stem.replace("-idx", ".idx")
    for folder in (data_dir, data_dir / "raw", data_dir / "MNIST" / "raw"):
        for name in (stem, f"{stem}.gz", alt, f"{alt}.gz"):
            if (folder / name).is_file():
                return folder / name
    raise InvalidInputError(
        f"{data_dir}: MNIST file {stem}[.gz] not found (also looked in raw/ and MNIST/raw/); "
        "put the four IDX files from the MNIST distribution there."
    )


def has_mnist_split(data_dir: PathLike, split: str) -> bool:
    """Whether ``data_dir`` (or its raw/, MNIST/raw/) holds the IDX images file of ``split``."""
    try:
        _find(Path(data_dir), MNIST_FILES[split][0])
    except InvalidInputError:
        return False
    return True


def load_mnist(data_dir: PathLike, split: str = "train") -> Dataset:
    """Read MNIST ``split`` ("train": 60,000 images; "test": 10,000) as float32 (N, 1, 28, 28) in [0, 1].

    Validates the IDX headers and sizes, that images and labels have the same count, and that
    labels are digits 0-9; every failure raises :class:`DataFormatError` naming the file.
    """
    if split not in MNIST_FILES:
        raise InvalidInputError(f"split must be 'train' or 'test'; got {split!r}.")
    d = Path(data_dir)
    if not d.is_dir():
        raise InvalidInputError(f"MNIST data_dir {str(d)!r} is not a folder; check the path.")
    img_path, lbl_path = (_find(d, stem) for stem in MNIST_FILES[split])
    images = read_idx_images(img_path)
    labels = read_idx_labels(lbl_path)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{img_path} holds {images.shape[0]} images but {lbl_path} holds {labels.shape[0]} labels; "
            "the two files must come from the same split."
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.argmax((labels < 0) | (labels > 9)))
        raise DataFormatError(f"{lbl_path}: label {int(labels[bad])} at index {bad} is not a digit 0-9; the file is corrupt.")
    x = torch.from_numpy(images.copy()).unsqueeze(1).to(torch.float32).div_(255.0)
    return Dataset(x, torch.from_numpy(labels), [str(i) for i in range(10)], f"mnist/{split}")
