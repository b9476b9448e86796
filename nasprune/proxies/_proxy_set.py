"""The proxy-set artifact: which training images were kept, by which method, on which exact data.

A proxy file is JSON with a format header and a sha256 checksum over its content (``nasprune/artifacts.py``).
Loading refuses a file whose checksum fails, and using it refuses a dataset whose fingerprint differs from
the one it was built on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from nasprune import __version__
from nasprune.artifacts import check_data, check_format, checksum, write_text
from nasprune.data import Dataset
from nasprune.errors import ProxyError

__all__ = ["ProxySet", "draw_name"]

FORMAT = "nasprune.proxyset/1"

@dataclass
class ProxySet:
    """Indices into a dataset's training split (``Dataset.train_x``), with their provenance."""

    indices: np.ndarray
    method: str
    per_class: dict[int, int]
    dataset: str
    fingerprint: str
    split: str = "train"
    source_indices: np.ndarray | None = None  # the same images, indexed in the original training set
    source_size: int | None = None
    config: dict = field(default_factory=dict)
    objective: float | None = None
    stats: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)  # Dataset.describe() of the data it was built on (split settings)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    version: str = __version__

    @classmethod
    def from_selection(cls, dataset: Dataset, kept: np.ndarray, method: str, *, config: dict | None = None,
                       objective: float | None = None, stats: dict | None = None) -> "ProxySet":
        kept = np.sort(np.asarray(kept, dtype=np.int64))
        counts = np.bincount(dataset.train_y[torch.as_tensor(kept)].numpy(), minlength=dataset.num_classes)
        return cls(
            indices=kept,
            method=method,
            per_class={c: int(k) for c, k in enumerate(counts)},
            dataset=dataset.name,
            fingerprint=dataset.fingerprint,
            source_indices=np.asarray(dataset.train_index)[kept],
            source_size=dataset.source_size,
            config=dict(config or {}),
            objective=None if objective is None else float(objective),
            stats=dict(stats or {}),
            data=dataset.describe(),
        )

    def __len__(self) -> int:
        return len(self.indices)

    # --- files -------------------------------------------------------------------------------------------

    def build_minutes(self) -> float | None:
        """Minutes spent building this proxy (scoring run + selection; a random proxy needs no scoring
        run), from ``stats``; None if unknown."""
        st = self.stats
        if "proxy_seconds" in st:
            return float(st["proxy_seconds"]) / 60
        scoring = None if self.method == "random" else st.get("scoring_seconds")
        parts = [float(p) for p in (scoring, st.get("selection_seconds", st.get("seconds"))) if p is not None]
        return sum(parts) / 60 if parts else None

    def _payload(self) -> dict:
        d = asdict(self)
        d["indices"] = [int(i) for i in self.indices]
        d["source_indices"] = None if self.source_indices is None else [int(i) for i in self.source_indices]
        d["per_class"] = {str(k): int(v) for k, v in self.per_class.items()}
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a crash leaves the old file or none, never half a file)."""
        payload = json.loads(json.dumps(self._payload(), default=_jsonable))  # exactly what load() will see
        doc = {"format": FORMAT, "sha256": checksum(payload, _jsonable), "proxy": payload}
        return write_text(path, json.dumps(doc, indent=1, default=_jsonable))

    @classmethod
    def load(cls, path: str | os.PathLike, dataset: Dataset | None = None) -> "ProxySet":
        """Read a proxy file; with ``dataset``, also check that it was built on that exact data."""
        path = Path(path)
        if not path.is_file():
            raise ProxyError(f"no proxy file at {path}")
        try:
            doc = json.loads(path.read_text())
            check_format(doc.get("format"), FORMAT, path, ProxyError, "nasprune proxy file")
            payload = doc["proxy"]
            ok = doc.get("sha256") == checksum(payload, _jsonable)
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise ProxyError(f"{path} is not a nasprune proxy file ({type(e).__name__}: {e})") from None
        if not ok:
            raise ProxyError(f"{path}: checksum mismatch, the file was modified or corrupted; rebuild it "
                             "with `nasprune prune`")
        proxy = cls(
            **{**payload,
               "indices": np.asarray(payload["indices"], dtype=np.int64),
               "source_indices": None if payload["source_indices"] is None
               else np.asarray(payload["source_indices"], dtype=np.int64),
               "per_class": {int(k): int(v) for k, v in payload["per_class"].items()}}
        )
        if dataset is not None:
            try:
                proxy.check_dataset(dataset)
            except ProxyError as e:
                raise ProxyError(f"{path}: {e}") from None
        return proxy

    # --- use ---------------------------------------------------------------------------------------------

    def check_dataset(self, dataset: Dataset) -> None:
        """Raise :class:`ProxyError` unless ``dataset`` is the exact data this proxy indexes; the message
        names the split settings that differ and how to rebuild the proxy."""
        check_data("proxy", self.fingerprint, dataset, ProxyError, recorded=self.data,
                   fix=f"Use the split it was built on, or rebuild it for this one: nasprune prune --dataset "
                       f"{dataset.name} --split-seed {dataset.seed} --val-size {dataset.val_size} --method "
                       f"{self.method} --out FILE")

    def tensors(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept training images and labels."""
        self.check_dataset(dataset)
        idx = torch.as_tensor(self.indices)
        return dataset.train_x[idx], dataset.train_y[idx]

    def subset(self, dataset) -> Subset:
        """A ``torch.utils.data.Subset`` for users' own training scripts.

        ``dataset`` is a nasprune :class:`Dataset` (its training split is wrapped as a TensorDataset),
        or the original torch training set (e.g. torchvision's ``FashionMNIST(train=True)``), which is
        indexed with ``source_indices``.
        """
        if isinstance(dataset, Dataset):
            self.check_dataset(dataset)
            return Subset(TensorDataset(dataset.train_x, dataset.train_y), self.indices.tolist())
        if self.source_indices is None or len(dataset) != self.source_size:
            raise ProxyError(
                f"this proxy indexes an original training set of {self.source_size} images, "
                f"got a dataset of {len(dataset)}"
            )
        return Subset(dataset, self.source_indices.tolist())


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in a proxy file")


def draw_name(name: str, k: int) -> str:
    """The name (of the training set and its file) of draw ``k`` of proxy ``name``, a stochastic method drawn several
    times with seeds in order: ``<name>-d<k>``. Every draw in nasprune is named by this function."""
    return f"{name}-d{k}"
