"""Named datasets (``--dataset mnist|gtsrb|cifar10``) and the CLI's ``--data`` clean-sample loader."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trojanscan.data.base import Dataset
from trojanscan.data.cifar import CIFAR10_CLASSES, has_cifar10_files, image_folder_splits, load_cifar10, load_image_folder
from trojanscan.data.gtsrb import GTSRB_CLASSES, has_gtsrb_split, load_gtsrb
from trojanscan.data.mnist import has_mnist_split, load_mnist
from trojanscan.data.npz import load_npz
from trojanscan.errors import InvalidInputError
from trojanscan.types import Shape3

__all__ = ["DATASETS", "DatasetInfo", "dataset_folder_kind", "dataset_info", "fit_clean_data", "load_clean_data",
           "load_dataset", "read_clean_data"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a named dataset before reading it."""

    name: str
    loader: Callable[..., Dataset]
    input_shape: Shape3
    num_classes: int
    class_names: tuple[str, ...]
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        load_mnist,
        (1, 28, 28),
        10,
        tuple(str(i) for i in range(10)),
        "MNIST IDX files (train-images-idx3-ubyte[.gz], ...)",
    ),
    "gtsrb": DatasetInfo(
        "gtsrb",
        load_gtsrb,
        (3, 32, 32),
        43,
        GTSRB_CLASSES,
        "GTSRB Final_Training/Final_Test ppm folders or zips + GT csv files, resized to 32x32",
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        load_cifar10,
        (3, 32, 32),
        10,
        CIFAR10_CLASSES,
        "CIFAR-10 python batches (cifar-10-batches-py) or a train|test/<class>/ image tree or zip",
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; InvalidInputError listing the known names otherwise."""
    key = name.lower() if isinstance(name, str) else name
    if key not in DATASETS:
        raise InvalidInputError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}.")
    return DATASETS[key]


def load_dataset(name: str, data_dir: PathLike, split: str = "train", **kwargs: Any) -> Dataset:
    """Read the named dataset (``mnist``, ``gtsrb`` or ``cifar10``) split from ``data_dir``.

    Extra keyword arguments go to the reader (e.g. ``size=``, ``cache_dir=`` for gtsrb/cifar10).
    """
    info = dataset_info(name)
    d = Path(data_dir)
    if not d.exists():
        raise InvalidInputError(f"data_dir {str(d)!r} for dataset {info.name!r} does not exist; check the path.")
    params = inspect.signature(info.loader).parameters
    unknown = sorted(k for k in kwargs if k not in params or k in ("data_dir", "split"))
    if unknown:
        accepted = [k for k in params if k not in ("data_dir", "split")]
        raise InvalidInputError(
            f"load_dataset({info.name!r}) got unknown option(s) {unknown}; {info.name} accepts {accepted or 'none'}."
        )
    return info.loader(d, split, **kwargs)


def dataset_folder_kind(path: PathLike) -> str | None:
    """The named dataset whose own file layout folder ``path`` holds with a test split (``mnist``: the IDX files,
    ``gtsrb``: the official Final_Test images, ``cifar10``: python batches or a named archive), else None."""
    p = Path(path)
    if not p.is_dir():
        return None
    if has_mnist_split(p, "test"):
        return "mnist"
    if has_gtsrb_split(p, "test"):
        return "gtsrb"
    if has_cifar10_files(p):
        return "cifar10"
    return None


def load_clean_data(path: PathLike, **kwargs: Any) -> Dataset:
    """Read the clean samples given to ``trojanscan scan --data``: a ``.npz`` file, a dataset folder, or an image
    folder/zip.

    A folder in a named dataset's own layout (:func:`dataset_folder_kind`: MNIST IDX files, GTSRB's official
    release, CIFAR-10's python batches) gives that dataset's **test** split. An image folder holds
    ``<class>/<image>`` (labels by class) or loose images (labels -1); one with ``train/`` and ``test/`` split
    folders gives ``test`` unless ``split=`` says otherwise. ``kwargs`` (``size=``, ``split=``, ``cache_dir=``) go
    to the reader (:func:`load_image_folder`, or :func:`load_dataset` for a dataset folder, where ``split`` is fixed).
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"--data {str(p)!r} does not exist; give a .npz file or a folder of images.")
    if p.is_file() and p.suffix.lower() == ".npz":
        if kwargs:
            raise InvalidInputError(f"options {sorted(kwargs)} do not apply to an .npz file ({p}).")
        return load_npz(p)
    kind = dataset_folder_kind(p)
    if kind is not None:
        if "split" in kwargs:
            raise InvalidInputError(f"--data {str(p)!r} is a {kind} folder, read as its test split; split= does not apply.")
        return load_dataset(kind, p, "test", **kwargs)
    if p.is_dir() or p.suffix.lower() == ".zip":
        if "split" not in kwargs and "test" in image_folder_splits(p):
            kwargs = {**kwargs, "split": "test"}
        return load_image_folder(p, **kwargs)
    raise InvalidInputError(
        f"--data {str(p)!r}: unsupported file type {p.suffix or '(none)'!r}; give a .npz file "
        "(arrays x float32 (N, C, H, W) in [0, 1] and y), a dataset folder (MNIST IDX, GTSRB, CIFAR-10) "
        "or a folder/zip of images."
    )


def read_clean_data(path: PathLike) -> Dataset | None:
    """``--data`` read as given, before the model is known; None for a folder of images of several sizes, which
    :func:`fit_clean_data` reads at the model's size."""
    from trojanscan.errors import MixedImageSizesError

    try:
        return load_clean_data(path)
    except MixedImageSizesError:
        return None


def _reads_at_any_size(path: Path) -> bool:
    """Whether the reader of folder ``path`` takes ``size=``: an image folder, GTSRB and CIFAR-10 (not MNIST's IDX)."""
    return dataset_folder_kind(path) in (None, "gtsrb", "cifar10")


def fit_clean_data(path: PathLike, shape: Shape3, clean: Dataset | None = None) -> tuple[Dataset, list[str]]:
    """Clean images from ``path`` brought to a model's input ``shape`` (C, H, W), and the report note saying what was
    done (empty when nothing was).

    ``clean`` is what :func:`read_clean_data` gave for ``path`` (None: images of several sizes, read here at the
    model's square size), so a file is not read twice. An ``.npz`` is returned as it is: its arrays are the user's
    exact samples. A folder's images are fitted by :func:`trojanscan.data.base.fit_images` (channels by luma or
    repetition, antialiased bilinear resize); a GTSRB, CIFAR-10 or image folder whose images are not at the model's
    square size is read again at that size from its files instead, so no image is resized twice (GTSRB's own images
    are 15 to 250 px). ``trojanscan scan``, ``patch`` and ``scan-zoo`` (``--data C,H,W=PATH``) share it.
    """
    from trojanscan.data.base import fit_images

    p = Path(path)
    c, h, w = (int(v) for v in shape)
    pending = clean is None
    if pending:
        clean = load_clean_data(p, size=max(h, w))
    assert clean is not None
    if p.suffix.lower() == ".npz" or (clean.input_shape == (c, h, w) and not pending):
        return clean, []
    reread = not pending and h == w and clean.input_shape[1:] != (h, w) and _reads_at_any_size(p)
    if reread:
        clean = load_clean_data(p, size=h)
        reread = clean.input_shape[1:] == (h, w)  # CIFAR-10's python batches stay 32x32: fitted below
    fitted, done = fit_images(clean, (c, h, w))
    if pending:
        done = ["of several sizes, read at {0}x{0}".format(max(h, w)), *done]
    elif reread:
        done = [f"read at {h}x{h}", *done]
    if not done:
        return fitted, []
    return fitted, [f"--data: {len(fitted)} images {', '.join(done)}, to fit the model's input {c}x{h}x{w} (images "
                    "from a folder are fitted to the model; an .npz is taken as it is)"]
