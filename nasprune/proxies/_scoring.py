"""The scoring run: train the pruning network once and record every per-example statistic.

One training of a ConvNet with a small linear bottleneck before the classifier (the authors' code
uses Linear(512, 50) -> Linear(50, 10)) yields, for every training example:

- forgetting events (Toneva et al. 2019): transitions from correct to wrong in the minibatches
  where the example is seen; examples never learned count as ``epochs`` events, the usual convention;
- EL2N and GraNd (Paul et al. 2021) at an early epoch: ||softmax - onehot|| and the norm of the
  last layer's loss gradient, ||softmax - onehot|| * ||[h, 1]||;
- the final bottleneck features, logits and the classifier's weight and bias, from which
  influence, herding and k-center work.

The run is one file (``nasprune/artifacts.py``: written atomically, format header, refused on other data), so
several proxy sets come from one training.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nasprune import __version__
from nasprune.artifacts import changed_settings, check_data, check_format, read_torch, show_changes, write_torch
from nasprune.config import ConfigError, from_mapping, to_mapping
from nasprune.data import Dataset, default_root
from nasprune.errors import ScoringError
from nasprune.training import Checkpoint, TrainConfig, resolve_device, to_float, train
from search_spaces import ConvNetSpec, build_convnet

__all__ = ["ScoringConfig", "ScoringRun", "cache_path", "comparable_settings", "load_or_run", "pruning_network",
           "run_scoring"]

FORMAT = "nasprune.scoring/1"


@dataclass
class ScoringConfig:
    """The pruning network and its training. The defaults (w64-d3 with a 64-d bottleneck, 6 epochs of batch 256)
    are the pruning network of results/fmnist-ref/ and results/objective-study/; the paper's code uses ResNet-18.

    ``train.mean``/``train.std`` left None mean the dataset's; ``train.device`` is not part of a run's identity
    (:func:`load_or_run`). Config files from before ``train`` may still set its settings at the top level
    (``MOVED``, read by ``nasprune/config.py`` with a FutureWarning).
    """

    MOVED: ClassVar[dict[str, str]] = {k: f"train.{k}" for k in
                                       ("epochs", "batch_size", "lr", "weight_decay", "seed", "device")}

    spec: str = "w64-d3-relu-instancenorm-avgpooling"
    bottleneck: int = 64
    score_epoch: int = 2  # epoch after which EL2N and GraNd are taken (Paul et al.: early in training)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=6, batch_size=256))

    def __post_init__(self) -> None:
        ConvNetSpec.from_id(self.spec)
        if not 1 <= self.score_epoch <= self.train.epochs:
            raise ValueError(f"score_epoch must be in [1, train.epochs={self.train.epochs}], got {self.score_epoch}")
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {self.bottleneck}")


@dataclass
class ScoringRun:
    """Everything the selection methods need, for every example of ``Dataset.train_x``."""

    config: dict
    dataset: str
    fingerprint: str
    labels: torch.Tensor  # (n,) int64
    features: torch.Tensor  # (n, bottleneck) float32, penultimate layer after training
    logits: torch.Tensor  # (n, C)
    weight: torch.Tensor  # (C, bottleneck) final classifier
    bias: torch.Tensor  # (C,)
    forgetting: torch.Tensor  # (n,) int64 forgetting events
    el2n: torch.Tensor  # (n,) at score_epoch
    grand: torch.Tensor  # (n,) at score_epoch
    train_acc: float
    val_acc: float | None
    seconds: dict  # training, features
    version: str = __version__

    def save(self, path: str | Path) -> Path:
        """Write atomically (a crash leaves the old file or none, never half a file)."""
        return write_torch(path, {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: str | Path, dataset: Dataset | None = None) -> "ScoringRun":
        path = Path(path)
        if not path.is_file():
            raise ScoringError(f"no scoring-run file at {path}")
        doc = read_torch(path, ScoringError, "nasprune scoring-run file",
                         "give another path to make a new scoring run, or delete it")
        check_format(doc.pop("format", None) if isinstance(doc, dict) else None, FORMAT, path, ScoringError,
                     "nasprune scoring-run file")
        run = cls(**doc)
        if len(run.labels) != len(run.features) or len(run.forgetting) != len(run.labels):
            raise ScoringError(f"{path} is inconsistent: arrays of different lengths")
        if dataset is not None:
            run.check_dataset(dataset)
        return run

    def check_dataset(self, dataset: Dataset) -> None:
        """Raise :class:`ScoringError` unless ``dataset`` is the exact data this run was made on."""
        check_data("scoring run", self.fingerprint, dataset, ScoringError,
                   fix=f"Use the data it was made on ({self.dataset}), or rerun the scoring on this data")
        if not torch.equal(dataset.train_y, self.labels):
            raise ScoringError("this scoring run's labels differ from the dataset's training labels although the "
                               "fingerprints agree; the file was modified: rerun the scoring on this data")


def pruning_network(config: ScoringConfig, dataset: Dataset) -> nn.Module:
    """The ConvNet of ``config.spec`` with a linear bottleneck before its classifier, initialised from
    ``config.train.seed`` without touching the global RNG.

    The bottleneck and the new classifier are drawn after the ConvNet from the same seeded stream (as
    ``torch.manual_seed(seed)`` followed by the three constructions), so the weights equal those of every
    earlier scoring run with that seed; ``build_convnet(seed=)`` alone would seed only the ConvNet.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        net = build_convnet(config.spec, dataset.in_channels, dataset.image_size, dataset.num_classes)
        net.features.append(nn.Linear(net.classifier.in_features, config.bottleneck))
        net.classifier = nn.Linear(config.bottleneck, dataset.num_classes)
    return net


class _Forgetting:
    """Counts correct-to-wrong transitions per example across the minibatches it appears in."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels
        self.prev = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
        self.learned = torch.zeros_like(self.prev)
        self.events = torch.zeros(len(labels), dtype=torch.int64, device=labels.device)

    def __call__(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        correct = logits.argmax(1) == self.labels[idx]
        self.events[idx] += (self.prev[idx] & ~correct).long()
        self.prev[idx] = correct
        self.learned[idx] |= correct

    def counts(self, epochs: int) -> torch.Tensor:
        return torch.where(self.learned, self.events, torch.full_like(self.events, epochs)).cpu()


@torch.inference_mode()
def _features_and_logits(model: nn.Module, x: torch.Tensor, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats = torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)])
    model.train()
    return feats, model.classifier(feats)


def _el2n_grand(feats: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    err = F.softmax(logits.float(), 1) - F.one_hot(labels, logits.shape[1]).float()
    el2n = err.norm(dim=1)
    return el2n, el2n * torch.sqrt(feats.float().pow(2).sum(1) + 1)


def run_scoring(dataset: Dataset, config: ScoringConfig | None = None, *, progress: bool = False,
                checkpoint: str | Path | None = None) -> ScoringRun:
    """Train the pruning network once on ``dataset.train_x`` and collect every statistic.

    With ``checkpoint`` (a file path), the training and the statistics gathered so far are saved after every
    epoch, a run killed midway resumes from its last epoch with the same result, and the file is removed
    when the run is complete.
    """
    config = config or ScoringConfig()
    t = config.train
    device = resolve_device(t.device)
    train_cfg = replace(t, mean=dataset.mean if t.mean is None else t.mean,
                        std=dataset.std if t.std is None else t.std, device=str(device))
    model = pruning_network(config, dataset)
    labels_dev = dataset.train_y.to(device)
    forgetting = _Forgetting(labels_dev)
    x_dev = to_float(dataset.train_x, train_cfg.mean, train_cfg.std, device)
    early: dict[str, torch.Tensor] = {}
    bar = tqdm(total=t.epochs, desc="scoring run", unit="epoch", disable=not progress)

    def on_epoch(epoch: int, net: nn.Module, _val) -> None:
        bar.update(1)
        if epoch == config.score_epoch:
            feats, logits = _features_and_logits(net, x_dev)
            early["el2n"], early["grand"] = _el2n_grand(feats, logits, labels_dev)

    def restore(state: dict) -> None:
        for k in ("prev", "learned", "events"):
            getattr(forgetting, k).copy_(state[k])
        early.update({k: v.to(device) for k, v in state["early"].items()})
        bar.update(state["epoch"])

    saver = None if checkpoint is None else Checkpoint(
        checkpoint, restore=restore,
        state=lambda: {"prev": forgetting.prev.cpu(), "learned": forgetting.learned.cpu(),
                       "events": forgetting.events.cpu(), "early": {k: v.cpu() for k, v in early.items()},
                       "epoch": bar.n})
    try:
        result = train(model, dataset.train_x, dataset.train_y, train_cfg, val=(dataset.val_x, dataset.val_y),
                       on_epoch=on_epoch, on_batch=forgetting, checkpoint=saver)
    finally:  # closed before a Ctrl-C's one line, not drawn again after it
        bar.close()
    if result.diverged:
        raise ValueError(f"the pruning network {config.spec} diverged; lower train.lr (got {t.lr})")
    start = time.perf_counter()
    feats, logits = _features_and_logits(model, x_dev)
    feature_seconds = time.perf_counter() - start
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
    return ScoringRun(
        config=asdict(config),
        dataset=dataset.name,
        fingerprint=dataset.fingerprint,
        labels=dataset.train_y.clone(),
        features=feats.float().cpu(),
        logits=logits.float().cpu(),
        weight=model.classifier.weight.detach().float().cpu(),
        bias=model.classifier.bias.detach().float().cpu(),
        forgetting=forgetting.counts(t.epochs),
        el2n=early["el2n"].float().cpu(),
        grand=early["grand"].float().cpu(),
        train_acc=float((logits.argmax(1) == labels_dev).float().mean().item() * 100),
        val_acc=result.val_acc,
        seconds={"training": result.seconds, "features": feature_seconds},
    )


def load_or_run(path: str | Path | None, dataset: Dataset, config: ScoringConfig | None = None, *,
                progress: bool = False) -> tuple[ScoringRun, bool]:
    """The one scoring-run cache: the run saved at ``path`` when it exists, else a new run saved there.

    A saved run must be of ``dataset`` and, when ``config`` is given, made with it (else a ScoringError
    names the settings that differ); ``config`` None takes a saved run as it is, or trains the default.
    A new run checkpoints every epoch to ``path`` + ``.ckpt``, so a killed one resumes. Returns the run and
    whether it was loaded.
    """
    if path is not None and Path(path).exists():
        run = ScoringRun.load(path, dataset)
        diff = {} if config is None else changed_settings(comparable_settings(run.config), comparable_settings(config))
        if diff:
            raise ScoringError(f"{path}: a scoring run with other settings than asked (setting made -> asked: "
                               f"{show_changes(diff)}); give another path, or delete it to make a new one")
        return run, True
    checkpoint = None if path is None else Path(str(path) + ".ckpt")
    run = run_scoring(dataset, config, progress=progress, checkpoint=checkpoint)
    if path is not None:
        run.save(path)
    return run, False


def cache_path(dataset: Dataset, config: ScoringConfig) -> Path:
    """Where a scoring run is kept when no file is named (``nasprune prune`` without ``--scores``): in the data cache
    (``$NASPRUNE_DATA/scoring/``), named by the data it trains on and its settings, so that no run is thrown away
    and the next proxy of the same data and settings reuses it."""
    digest = hashlib.sha256(json.dumps(comparable_settings(config), sort_keys=True, default=str).encode()).hexdigest()
    return default_root() / "scoring" / f"{dataset.name}-{dataset.fingerprint[:12]}-{digest[:12]}.pt"


def comparable_settings(config: ScoringConfig | dict) -> dict:
    """A scoring config as compared: ``ScoringRun.config`` as recorded, of this version or, flat, of one before
    ``ScoringConfig.train`` (its TrainConfig settings added since at their defaults), less the device, which may
    differ from machine to machine."""
    if isinstance(config, dict):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                config = from_mapping(ScoringConfig, config)
        except ConfigError:  # not a config this version reads: compared as it is
            pass
    settings = to_mapping(config)
    if isinstance(settings.get("train"), dict):
        settings["train"] = {k: v for k, v in settings["train"].items() if k != "device"}
    return settings
