"""Datasets as uint8 image tensors with a seeded, stratified validation split and a fingerprint.

Every later stage indexes into ``Dataset.train_x``; the fingerprint (sha256 of all three splits'
images and labels) names that exact data, so an artifact built on one split is never used on another.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nasprune.config import check_random_state
from nasprune.errors import DatasetError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# name -> (default val_size, mean, std); None mean/std are computed from the training split.
_DEFAULTS: dict[str, tuple[int, tuple | None, tuple | None]] = {
    "fashion-mnist": (10_000, (0.2860,), (0.3530,)),
    "mnist": (10_000, (0.1307,), (0.3081,)),
    "cifar10": (5_000, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": (5_000, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "synthetic": (200, None, None),
}
DATASETS = tuple(_DEFAULTS)


@dataclass(frozen=True)
class DatasetSpec:
    """Which data and split: the arguments of :func:`load_dataset` as one value, as configs and experiments
    record them."""

    name: str
    root: str | None = None  # None: $NASPRUNE_DATA or ~/.cache/nasprune/data
    download: bool = False
    val_size: int | None = None  # None: the dataset's default
    seed: int = 0  # of the train/val split
    train_size: int | None = None  # None: the whole training split

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise DatasetError(f"unknown dataset {self.name!r}; choose one of {', '.join(DATASETS)}")
        for key in ("val_size", "train_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise DatasetError(f"{key} must be >= 1 or null, got {value}")

    def load(self) -> "Dataset":
        return load_dataset(self.name, root=self.root, download=self.download, val_size=self.val_size,
                            seed=self.seed, train_size=self.train_size)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test splits as uint8 (N, C, H, W) images and int64 labels, on the CPU."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    seed: int
    val_size: int
    train_index: np.ndarray  # position of each train_x image in the original training set
    source_size: int  # length of the original training set (train + val)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    def describe(self) -> dict:
        """Plain facts about this data, for artifacts and reports."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "val_size": self.val_size,
            "train": len(self.train_y),
            "val": len(self.val_y),
            "test": len(self.test_y),
            "shape": list(self.train_x.shape[1:]),
        }


def default_root() -> Path:
    """``$NASPRUNE_DATA`` or ``~/.cache/nasprune/data``."""
    return Path(os.environ.get("NASPRUNE_DATA", Path.home() / ".cache" / "nasprune" / "data"))


def fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 over the raw bytes (and shapes) of the given tensors."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.contiguous().cpu()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (train, val), each class contributing in proportion to its size."""
    y = labels.numpy()
    n = len(y)
    if not 0 <= val_size < n:
        raise DatasetError(f"val_size must be in [0, {n}), got {val_size}")
    rng = check_random_state(seed)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * val_size / n
    quota = np.floor(exact).astype(int)
    # largest remainders get the leftover places, so the quotas sum to val_size exactly
    quota[np.argsort(-(exact - quota), kind="stable")[: val_size - quota.sum()]] += 1
    val = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    val_idx = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask), val_idx


def _stage_debian_fashion_mnist(root: Path) -> None:
    """Decompress the Debian package's files into torchvision's layout (root/FashionMNIST/raw)."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in FASHION_MNIST_FILES) or not DEBIAN_FASHION_MNIST.is_dir():
        return
    raw.mkdir(parents=True, exist_ok=True)
    for f in FASHION_MNIST_FILES:
        src = DEBIAN_FASHION_MNIST / f"{f}.gz"
        if src.exists() and not (raw / f).exists():
            tmp = raw / f"{f}.tmp"
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            tmp.replace(raw / f)


def _load_torchvision(name: str, root: Path, download: bool):
    """Return (train_x, train_y, test_x, test_y, classes) via torchvision."""
    from torchvision import datasets

    cls = {
        "fashion-mnist": datasets.FashionMNIST,
        "mnist": datasets.MNIST,
        "cifar10": datasets.CIFAR10,
        "cifar100": datasets.CIFAR100,
    }[name]
    if name == "fashion-mnist" and not download:
        _stage_debian_fashion_mnist(root)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as e:
        hint = (
            "install the Debian package (apt-get install dataset-fashion-mnist), which puts the files in "
            f"{DEBIAN_FASHION_MNIST}, or pass download=True (--download)"
            if name == "fashion-mnist"
            else "pass download=True (--download) on a machine with internet access"
        )
        raise DatasetError(f"{name} not found under {root}: {hint}. ({e})") from None
    out = []
    for split in (train, test):
        x = torch.as_tensor(np.asarray(split.data))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) grey or (N,H,W,C) colour
        out += [x.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(split.targets), dtype=torch.int64)]
    return (*out, tuple(train.classes))


def _synthetic(n_train: int = 1200, n_test: int = 300, size: int = 16, classes: int = 4, seed: int = 1234):
    """A small learnable grey-image problem: one smooth random template per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(classes, 1, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear") * 220
    def make(n):
        y = torch.arange(n) % classes
        x = templates[y] + torch.randn(n, 1, size, size, generator=g) * 60
        return x.clamp(0, 255).to(torch.uint8), y.to(torch.int64)
    return (*make(n_train), *make(n_test), tuple(f"class{i}" for i in range(classes)))


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_size: int | None = None,
    seed: int = 0,
    train_size: int | None = None,
) -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`) with a validation split carved from the training set.

    ``val_size`` defaults to 10,000 for the MNIST family (50,000 train left, like CIFAR-10) and
    5,000 for CIFAR; the split is stratified by class and fixed by ``seed``. ``train_size`` keeps a
    stratified, seeded subset of the training split (for quick runs and tests); None keeps all of it.
    """
    if name not in _DEFAULTS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    default_val, mean, std = _DEFAULTS[name]
    val_size = default_val if val_size is None else int(val_size)
    if name == "synthetic":
        full_x, full_y, test_x, test_y, classes = _synthetic()
    else:
        full_x, full_y, test_x, test_y, classes = _load_torchvision(
            name, Path(root) if root is not None else default_root(), download
        )
    tr, va = stratified_split(full_y, val_size, seed)
    if train_size is not None and train_size < len(tr):
        if train_size < 1:
            raise DatasetError(f"train_size must be >= 1, got {train_size}")
        _, keep = stratified_split(full_y[tr], train_size, seed + 1)
        tr = tr[keep]
    train_x, train_y = full_x[tr], full_y[tr]
    val_x, val_y = full_x[va], full_y[va]
    if mean is None:  # exact integer sums, so the statistics do not depend on the number of threads
        flat = train_x.transpose(0, 1).reshape(train_x.shape[1], -1).long()
        n = flat.shape[1]
        total, squares = flat.sum(1).double(), flat.pow(2).sum(1).double()
        mean = (total / n / 255).tolist()
        std = ((squares - total * total / n) / (n - 1)).sqrt().div(255).tolist()
    return Dataset(
        name=name,
        train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x, test_y=test_y,
        classes=classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        fingerprint=fingerprint(train_x, train_y, val_x, val_y, test_x, test_y),
        seed=seed,
        val_size=val_size,
        train_index=tr,
        source_size=len(full_y),
    )
