"""GTSRB (German Traffic Sign Recognition Benchmark) reader: 43 classes, RGB, resized to size x size.

Official layout, read from an extracted folder (optionally under ``GTSRB/``) or straight from the
zip archives in ``data_dir``:

- train: ``GTSRB_Final_Training_Images.zip`` / ``[GTSRB/]Final_Training/Images/000NN/*.ppm`` with one
  ``GT-000NN.csv`` per class folder (``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``);
- test: ``GTSRB_Final_Test_Images.zip`` / ``[GTSRB/]Final_Test/Images/*.ppm``; the labels come from
  ``GT-final_test.csv`` (in ``data_dir``, ``data_dir/GTSRB``, the Images folder, or
  ``GTSRB_Final_Test_GT.zip``). The ``GT-final_test.test.csv`` shipped in the images zip has no
  ClassId column and is not enough.

The whole image is resized (bilinear, PIL) to ``size`` x ``size``; the ROI columns are not used
(Neural Cleanse-style experiments use the whole 32x32 image). Decoded images are cached on disk
(see :mod:`trojanscan.data.npz`), keyed by the source files' paths, sizes and mtimes and ``size``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from trojanscan.data.base import Dataset
from trojanscan.data.cifar import FileTree, _check_size, check_split, decode_many
from trojanscan.data.npz import cached_uint8_images, file_fingerprint, uint8_to_dataset
from trojanscan.errors import DataFormatError, InvalidInputError

__all__ = ["GTSRB_CLASSES", "GTSRB_NUM_CLASSES", "load_gtsrb"]

#: GTSRB class names in ClassId order (the widely used ``signnames.csv``).
GTSRB_CLASSES: tuple[str, ...] = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)
GTSRB_NUM_CLASSES = len(GTSRB_CLASSES)

TRAIN_ZIP = "GTSRB_Final_Training_Images.zip"
TEST_ZIP = "GTSRB_Final_Test_Images.zip"
TEST_GT_CSV = "GT-final_test.csv"
TEST_GT_ZIP = "GTSRB_Final_Test_GT.zip"
_SUBDIR = {"train": "Final_Training", "test": "Final_Test"}
_ZIPS = {"train": TRAIN_ZIP, "test": TEST_ZIP}

PathLike = str | os.PathLike[str]


def load_gtsrb(
    data_dir: PathLike,
    split: str = "train",
    size: int = 32,
    *,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Read GTSRB ``split`` ("train": 39,209 images; "test": 12,630) as float32 (N, 3, size, size).

    Labels are the ClassId (0-42); ``class_names`` are the 43 sign names. Raises
    :class:`DataFormatError` naming the file for a missing or inconsistent csv, a label that
    disagrees with its class folder, an image missing from (or absent from) its csv, or a corrupt
    ppm; :class:`InvalidInputError` for a bad argument or a ``data_dir`` with no GTSRB data.
    """
    check_split(split)
    _check_size(size)
    d = Path(data_dir)
    if not d.exists():
        raise InvalidInputError(f"GTSRB data_dir {str(d)!r} does not exist; check the path.")
    with _open_images(d, split) as images:
        tree = images.tree
        listing = tree.names() if tree.kind == "dir" else []  # a zip is keyed by its own size and mtime
        key: dict[str, Any] = {"split": split, "size": size, "images": tree.fingerprint(listing)}
        labels_csv: tuple[str, bytes] | None = None
        if split == "test":
            csv_where, csv_bytes, csv_key = _find_test_csv(d if d.is_dir() else d.parent, images)
            key["labels"] = csv_key
            labels_csv = (csv_where, csv_bytes)

        def build() -> tuple[np.ndarray, np.ndarray, list[str]]:
            if labels_csv is None:
                names, labels = _index_train(tree, images.prefix)
            else:
                names, labels = _index_test(tree, images.prefix, *labels_csv)
            x = decode_many(tree, names, size, mode="RGB")
            return x, np.asarray(labels, dtype=np.int64), list(GTSRB_CLASSES)

        x, y, class_names = cached_uint8_images(f"gtsrb-{split}", key, build, cache_dir, use_cache)
    return uint8_to_dataset(x, y, class_names, f"gtsrb/{split}")


class _Images:
    """The Images folder of one split: a FileTree plus the path prefix of its entries inside it.

    ``prefix`` is "" for an extracted folder and e.g. ``GTSRB/Final_Training/Images/`` inside a zip;
    it is found lazily, so a cache hit never lists the archive.
    """

    def __init__(self, tree: FileTree, split: str, prefix: str | None) -> None:
        self.tree, self.split, self._prefix = tree, split, prefix

    def __enter__(self) -> _Images:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tree.close()

    @property
    def prefix(self) -> str:
        if self._prefix is None:
            marker = f"{_SUBDIR[self.split]}/Images/"
            found = sorted({n[: n.index(marker) + len(marker)] for n in self.tree.names() if marker in n})
            if len(found) != 1:
                what = "no" if not found else f"several ({', '.join(found)})"
                raise DataFormatError(
                    f"{self.tree.path}: {what} '{marker}' folder inside; expected the official "
                    f"{_ZIPS[self.split]} with [GTSRB/]{marker}... entries."
                )
            self._prefix = found[0]
        return self._prefix


def has_gtsrb_split(data_dir: PathLike, split: str) -> bool:
    """Whether ``data_dir`` holds GTSRB ``split`` images in the official layout (the zip or [GTSRB/]Final_*/Images/)."""
    d, sub = Path(data_dir), _SUBDIR[split]
    return d.is_dir() and ((d / _ZIPS[split]).is_file() or (d / sub / "Images").is_dir()
                           or (d / "GTSRB" / sub / "Images").is_dir())


def _open_images(d: Path, split: str) -> _Images:
    """Locate the Images folder of ``split``: an extracted folder first, else the official zip."""
    sub = _SUBDIR[split]
    if d.is_dir():
        for cand in (d / sub / "Images", d / "GTSRB" / sub / "Images"):
            if cand.is_dir():
                return _Images(FileTree(cand), split, "")
        archive = d / _ZIPS[split]
    else:
        archive = d
    if not archive.is_file():
        raise InvalidInputError(
            f"{d}: no GTSRB {split} data: expected {_ZIPS[split]} or an extracted [GTSRB/]{sub}/Images/ folder there."
        )
    return _Images(FileTree(archive), split, None)


def _read_gt_csv(data: bytes, where: str) -> list[tuple[str, int]]:
    """Parse a GTSRB ground-truth csv (semicolon separated) into (Filename, ClassId) rows."""
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{where}: not a text csv file ({exc}); replace it with the official file.") from exc
    if not lines:
        raise DataFormatError(f"{where}: the csv is empty; replace it with the official file.")
    header = [h.strip() for h in lines[0].split(";")]
    if "Filename" not in header or "ClassId" not in header:
        raise DataFormatError(
            f"{where}: the csv header {header} lacks a Filename or ClassId column; expected "
            "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId (the official ground truth)."
        )
    fi, ci = header.index("Filename"), header.index("ClassId")
    rows: list[tuple[str, int]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(";")]
        try:
            cid = int(fields[ci])
            fname = fields[fi]
        except (IndexError, ValueError) as exc:
            raise DataFormatError(f"{where}: line {lineno} is malformed ({line!r}); expected {len(header)} fields.") from exc
        if not 0 <= cid < GTSRB_NUM_CLASSES:
            raise DataFormatError(f"{where}: line {lineno} has ClassId {cid}; GTSRB labels are 0..42.")
        rows.append((fname, cid))
    return rows


def _index_train(tree: FileTree, prefix: str) -> tuple[list[str], list[int]]:
    """List the training ppm files (class folder order, csv order) and check them against the csvs."""
    pattern = re.compile(re.escape(prefix) + r"(\d{5})/([^/]+)$")
    folders: dict[str, set[str]] = {}
    for n in tree.names():
        m = pattern.match(n)
        if m:
            folders.setdefault(m.group(1), set()).add(m.group(2))
    if not folders:
        raise DataFormatError(f"{tree.display(prefix)}: no class folders 000NN/ found; expected Images/000NN/*.ppm.")
    names: list[str] = []
    labels: list[int] = []
    for folder in sorted(folders):
        fid = int(folder)
        base = f"{prefix}{folder}/"
        if fid >= GTSRB_NUM_CLASSES:
            raise DataFormatError(f"{tree.display(base)}: class folder {folder} is not a GTSRB class (00000..00042).")
        csv = f"GT-{folder}.csv"
        if csv not in folders[folder]:
            raise DataFormatError(
                f"{tree.display(base + csv)}: missing; every class folder needs its ground-truth csv "
                "(re-extract the official GTSRB_Final_Training_Images.zip)."
            )
        rows = _read_gt_csv(tree.read(base + csv), tree.display(base + csv))
        ppms = {f for f in folders[folder] if f.lower().endswith(".ppm")}
        seen: set[str] = set()
        for fname, cid in rows:
            if fname not in ppms:
                raise DataFormatError(f"{tree.display(base + fname)}: listed in {csv} but missing; restore the file.")
            if cid != fid:
                raise DataFormatError(
                    f"{tree.display(base + fname)}: {csv} gives ClassId {cid} but the file sits in class folder "
                    f"{folder}; fix the csv row or move the file."
                )
            if fname in seen:
                raise DataFormatError(f"{tree.display(base + csv)}: lists {fname} twice; remove the duplicate row.")
            seen.add(fname)
            names.append(base + fname)
            labels.append(cid)
        unlisted = sorted(ppms - seen)
        if unlisted:
            raise DataFormatError(
                f"{tree.display(base + unlisted[0])}: not listed in {csv} ({len(unlisted)} such file(s)); "
                "its label is unknown: add it to the csv or remove it."
            )
    return names, labels


def _find_test_csv(d: Path, images: _Images) -> tuple[str, bytes, dict[str, Any]]:
    """Find GT-final_test.csv (with ClassId): returns (where, bytes, cache key material)."""
    for cand in (d / TEST_GT_CSV, d / "GTSRB" / TEST_GT_CSV):
        if cand.is_file():
            return str(cand), cand.read_bytes(), file_fingerprint(cand)
    tree, inner = images.tree, images.prefix + TEST_GT_CSV
    if tree.exists(inner):
        return tree.display(inner), tree.read(inner), {"inside": "images"}
    gt_zip = d / TEST_GT_ZIP
    if gt_zip.is_file():
        with FileTree(gt_zip) as z:
            hits = [n for n in z.names() if n.rsplit("/", 1)[-1] == TEST_GT_CSV]
            if hits:
                return z.display(hits[0]), z.read(hits[0]), file_fingerprint(gt_zip)
    raise DataFormatError(
        f"{d}: no GTSRB test labels: {TEST_GT_CSV} (with a ClassId column) was not found in {d}, {d / 'GTSRB'}, "
        f"the test Images folder or {TEST_GT_ZIP}. The GT-final_test.test.csv inside {TEST_ZIP} has no labels; "
        f"download {TEST_GT_ZIP} (official GTSRB site) and put {TEST_GT_CSV} in {d}."
    )


def _index_test(tree: FileTree, prefix: str, csv_where: str, csv_bytes: bytes) -> tuple[list[str], list[int]]:
    """List the test ppm files (sorted) with their labels from GT-final_test.csv."""
    ppms = sorted(n for n in tree.names() if n.startswith(prefix) and "/" not in n[len(prefix) :] and n.lower().endswith(".ppm"))
    if not ppms:
        raise DataFormatError(f"{tree.display(prefix)}: no .ppm images found; expected Final_Test/Images/*.ppm.")
    rows = _read_gt_csv(csv_bytes, csv_where)
    label_of: dict[str, int] = {}
    for fname, cid in rows:
        if fname in label_of and label_of[fname] != cid:
            raise DataFormatError(f"{csv_where}: lists {fname} twice with different ClassIds; fix the csv.")
        label_of[fname] = cid
    have = {n[len(prefix) :] for n in ppms}
    missing = [f for f in label_of if f not in have]
    if missing:
        raise DataFormatError(
            f"{tree.display(prefix + missing[0])}: listed in {csv_where} but missing ({len(missing)} such file(s)); "
            "restore the test images or use the matching csv."
        )
    labels: list[int] = []
    for n in ppms:
        fname = n[len(prefix) :]
        if fname not in label_of:
            raise DataFormatError(f"{tree.display(n)}: has no row in {csv_where}; its label is unknown.")
        labels.append(label_of[fname])
    return ppms, labels
