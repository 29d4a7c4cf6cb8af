""".npz clean-sample files, and the on-disk ``.npz`` array cache the image readers share.

A clean-sample file (``trojanscan scan MODEL --data clean.npz``) holds

- ``x``: float32 (or float64/float16, converted) of shape (N, C, H, W), values in [0, 1];
- ``y``: integer labels of shape (N,) (optional: missing labels read as -1, "unknown");
- ``class_names``: optional unicode array of the class names.

It is read with ``np.load(allow_pickle=False)``: no pickle, ever.

The cache (:func:`cached_uint8_images`) stores decoded images as uint8 NCHW plus int64 labels in
``<cache_dir>/<stem>-<key>.npz``. ``cache_dir`` defaults to ``$TROJANSCAN_CACHE`` or
``~/.cache/trojanscan``. The key hashes the source files' paths, sizes and mtimes together with the
reader's parameters, so an edited source or a different ``size`` never reads a stale entry. Files
are written atomically (temporary file, then ``os.replace``); an unreadable or inconsistent cache
entry is ignored (with a warning) and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trojanscan._fileio import atomic_path
from trojanscan.data.base import Dataset
from trojanscan.errors import DataFormatError, InvalidInputError

__all__ = [
    "CACHE_ENV",
    "cached_uint8_images",
    "default_cache_dir",
    "file_fingerprint",
    "load_npz",
    "save_npz",
    "uint8_to_dataset",
]

#: Environment variable naming the cache folder.
CACHE_ENV = "TROJANSCAN_CACHE"
#: Bumped whenever a reader's decoded output changes, so old cache entries are never reused.
_CACHE_FORMAT = 1

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# clean-sample .npz files
# --------------------------------------------------------------------------------------------


def load_npz(path: PathLike, name: str | None = None) -> Dataset:
    """Read a clean-sample ``.npz`` file (arrays ``x``, optional ``y`` and ``class_names``).

    Float64/float16 ``x`` is converted to float32; integer ``x`` is refused (divide 0-255 images by
    255 first). Missing ``y`` gives labels -1 ("unknown"). Raises :class:`DataFormatError` naming the
    file, the problem and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"clean-sample file {str(p)!r} does not exist; check the path.")
    if p.stat().st_size == 0:
        raise DataFormatError(f"{p}: the file is empty (0 bytes); re-create it with trojanscan.data.save_npz.")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataFormatError(f"{p}: is a single .npy array; expected an .npz archive: np.savez(path, x=images, y=labels).")
        with loaded as npz:
            keys = list(npz.files)
            if "x" not in keys:
                raise DataFormatError(
                    f"{p}: no array named 'x' (found {keys or 'no arrays'}); save the images as "
                    "np.savez(path, x=images, y=labels) with images float32 (N, C, H, W) in [0, 1]."
                )
            x = npz["x"]
            y = npz["y"] if "y" in keys else None
            names = npz["class_names"] if "class_names" in keys else None
    except DataFormatError:
        raise
    except ValueError as exc:
        if "Object arrays" in str(exc):
            raise DataFormatError(
                f"{p}: holds object arrays, which need pickle to load (refused: pickle can run code); "
                "save plain numeric arrays instead."
            ) from exc
        raise DataFormatError(f"{p}: not a readable .npz archive ({exc}); re-create it with np.savez.") from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataFormatError(f"{p}: not a readable .npz archive ({exc}); re-create it with np.savez.") from exc

    xt = _check_x(x, p)
    yt = _check_y(y, int(xt.shape[0]), p)
    class_names = [str(s) for s in names.reshape(-1)] if names is not None and names.dtype.kind == "U" else []
    return Dataset(xt, yt, class_names, name or p.stem)


def _check_x(x: np.ndarray, p: Path) -> torch.Tensor:
    """Validate and convert the ``x`` array of a clean-sample file."""
    if x.dtype.kind in "uib":
        raise DataFormatError(
            f"{p}: x has integer dtype {x.dtype}; images must be float in [0, 1]. "
            "If they are 0-255 pixels, save x.astype(np.float32) / 255."
        )
    if x.dtype.kind != "f":
        raise DataFormatError(f"{p}: x has dtype {x.dtype}; expected float32 (N, C, H, W) in [0, 1].")
    if x.ndim != 4:
        fix = " Add a channel axis: x[:, None]." if x.ndim == 3 else ""
        raise DataFormatError(f"{p}: x must have 4 dimensions (N, C, H, W); got shape {x.shape}.{fix}")
    n, c, h, w = x.shape
    if n == 0:
        raise DataFormatError(f"{p}: x holds no images (shape {x.shape}); save at least one image.")
    if c not in (1, 3) and w in (1, 3):
        raise DataFormatError(f"{p}: x looks channels-last {x.shape}; expected (N, C, H, W). Save x.transpose(0, 3, 1, 2).")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x32).all():
        raise DataFormatError(f"{p}: x contains NaN or inf values; remove or fix those images.")
    lo, hi = float(x32.min()), float(x32.max())
    if lo < 0.0 or hi > 1.0:
        hint = " They look like 0-255 pixels: divide by 255." if hi > 1.0 and hi <= 255.0 and lo >= 0.0 else ""
        raise DataFormatError(
            f"{p}: x values must lie in [0, 1] (unnormalised pixels); got [{lo:.4g}, {hi:.4g}].{hint}"
            " Do not store mean/std-normalised images: normalisation belongs to the model."
        )
    return torch.from_numpy(x32)


def _check_y(y: np.ndarray | None, n: int, p: Path) -> torch.Tensor:
    """Validate and convert the optional ``y`` array of a clean-sample file (-1 = unknown)."""
    if y is None:
        return torch.full((n,), -1, dtype=torch.int64)
    if y.dtype.kind not in "ui":
        raise DataFormatError(f"{p}: y has dtype {y.dtype}; labels must be integers (save y.astype(np.int64)).")
    if y.ndim != 1 or y.shape[0] != n:
        raise DataFormatError(f"{p}: y must have shape ({n},) to match x; got {y.shape}.")
    y64 = y.astype(np.int64)
    if n and int(y64.min()) < -1:
        raise DataFormatError(f"{p}: y contains {int(y64.min())}; labels must be >= 0 (or -1 for unknown).")
    return torch.from_numpy(y64)


def save_npz(path: PathLike, dataset: Dataset) -> Path:
    """Write ``dataset`` as a clean-sample ``.npz`` (``x``, ``y``, ``class_names``), atomically."""
    if not isinstance(dataset, Dataset):
        raise InvalidInputError(f"save_npz expects a trojanscan.data.Dataset; got {type(dataset).__name__}.")
    target = Path(path)
    arrays: dict[str, np.ndarray] = {
        "x": dataset.x.detach().cpu().numpy().astype(np.float32, copy=False),
        "y": dataset.y.detach().cpu().numpy().astype(np.int64, copy=False),
    }
    if dataset.class_names:
        arrays["class_names"] = np.asarray([str(s) for s in dataset.class_names], dtype=np.str_)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return target


# --------------------------------------------------------------------------------------------
# the on-disk cache of decoded images
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$TROJANSCAN_CACHE`` if set, else ``~/.cache/trojanscan``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "trojanscan"


def file_fingerprint(path: PathLike) -> dict[str, Any]:
    """Absolute path, size and mtime of one file: what a cache key needs to notice a change."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def uint8_to_dataset(x: np.ndarray, y: np.ndarray, class_names: list[str], name: str) -> Dataset:
    """Build a :class:`Dataset` from uint8 NCHW images and int64 labels (x / 255 as float32)."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(255.0)
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return Dataset(xt, yt, list(class_names), name)


Builder = Callable[[], tuple[np.ndarray, np.ndarray, list[str]]]


def cached_uint8_images(
    stem: str,
    key_parts: Mapping[str, Any],
    build: Builder,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return ``build()`` (uint8 NCHW images, int64 labels, class names), through the disk cache.

    ``key_parts`` must identify the source exactly (use :func:`file_fingerprint`) and every
    parameter that changes the output. A cache entry that cannot be read or fails its checks is
    reported with a warning and rebuilt; a cache folder that cannot be written only warns.
    """
    if not use_cache:
        return build()
    blob = json.dumps({"format": _CACHE_FORMAT, "stem": stem, **key_parts}, sort_keys=True, default=str)
    key = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    entry = folder / f"{stem}-{key}.npz"
    if entry.is_file():
        hit = _read_cache(entry)
        if hit is not None:
            return hit
    x, y, names = build()
    try:
        with atomic_path(entry) as tmp, open(tmp, "wb") as f:
            np.savez(f, x=x, y=y, class_names=np.asarray(names, dtype=np.str_))
    except OSError as exc:
        warnings.warn(f"could not write the data cache {entry} ({exc}); continuing without it.", stacklevel=3)
    return x, y, names


def _read_cache(entry: Path) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Read one cache entry, or warn and return None if it is unreadable or inconsistent."""
    try:
        with np.load(entry, allow_pickle=False) as npz:
            x, y, names = npz["x"], npz["y"], npz["class_names"]
        ok = x.dtype == np.uint8 and x.ndim == 4 and y.dtype == np.int64 and y.shape == (x.shape[0],) and names.dtype.kind == "U"
        if ok:
            return x, y, [str(s) for s in names.reshape(-1)]
        problem = "unexpected array shapes or dtypes"
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is rebuilt, whatever broke it
        problem = f"{type(exc).__name__}: {exc}"
    warnings.warn(f"ignoring the corrupt data cache entry {entry} ({problem}); re-reading the source.", stacklevel=4)
    return None
