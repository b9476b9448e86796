"""What one training run takes (:class:`TrainConfig`) and what it gives back (:class:`TrainResult`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["TrainConfig", "TrainResult", "config_defaults"]


@dataclass
class TrainConfig:
    """Hyperparameters of one training run. Defaults follow the paper (batch 128, SGD 0.01, momentum
    0.9, weight decay 5e-4, cosine)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine", "step" (x0.1 at half the epochs, as Dataset Condensation) or "constant"
    crop_padding: int = 4  # 0 disables random crops
    flip: bool = True
    mean: tuple[float, ...] | None = None  # None: per-channel statistics of train_x
    std: tuple[float, ...] | None = None
    seed: int = 0
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    channels_last: bool = False  # CUDA only
    bf16: bool = False  # bf16 autocast, CUDA only
    eval_batch_size: int = 128  # on a CPU, 128 evaluates 1.5-3x faster than 2048 (whose activations fall out of cache)
    eval_test: bool = True  # False: skip the test split even when given (test_acc None), e.g. for proxies
    eval_every: int = 0  # N > 0: val accuracy after every N-th epoch and the last, into history; 0: at the end only
    # validate on a fixed, class-stratified part of the validation split of this many images (the same for every job);
    # None: all of it. A short rung job spends most of its time outside the loop evaluating (scripts/bench_rung_eval.py)
    val_images: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs} and {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose cosine, step or constant")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.val_images is not None and self.val_images < 1:
            raise ValueError(f"val_images must be >= 1 (None: the whole validation split), got {self.val_images}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0: validate only at the end), got {self.eval_every}")

    def steps(self, n: int, epochs: int | None = None) -> int:
        """SGD steps of training on ``n`` images for ``epochs`` (default: this config's): every epoch's last batch
        may be short, none is dropped. Comparing budgets across training-set sizes is in steps, not epochs."""
        return math.ceil(n / self.batch_size) * (self.epochs if epochs is None else epochs)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What one run produced. Accuracies are in percent; ``val_acc``/``test_acc`` are None when
    that split was not given (``test_acc`` also when ``eval_test`` is False). ``history`` holds one dict
    per epoch: ``epoch``, ``train_loss`` and, at the epochs ``TrainConfig.eval_every`` asks for, ``val_acc``."""

    train_loss: float
    val_acc: float | None
    test_acc: float | None
    epochs: int
    seconds: float
    images_per_sec: float
    diverged: bool
    history: list[dict] = field(default_factory=list)

    @property
    def tse(self) -> float:
        """Training speed estimation (TSE, Ru et al., NeurIPS 2021): the sum over the epochs of each epoch's mean
        training loss, at no cost beyond the training; lower ranks higher (the net learnt faster). Over the last
        epoch alone it is ``train_loss``. NaN for a diverged run."""
        return float("nan") if self.diverged else float(sum(h["train_loss"] for h in self.history))

    def to_dict(self) -> dict:
        return asdict(self)


def config_defaults() -> dict:
    """Every ``TrainConfig`` setting at its default: what a stored config written before a setting existed
    counts it as (checkpoints, and the studies' identities in ``nasprune/search/_studies.py``)."""
    return TrainConfig().to_dict()
