"""One short training loop with the whole training set kept as a tensor on the device.

No DataLoader: batches are slices of a seeded permutation, and augmentation (random crop with
zero padding, horizontal flip) is a batched tensor op, as in airbench. A NaN or inf loss ends the
run with ``diverged=True`` instead of raising, because sigmoid and unnormalised nets do diverge.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasprune.artifacts import ArtifactError, check_format, read_torch, write_torch
from nasprune.data import Dataset
from search_spaces.convnet import ConvNetSpec, build_convnet

CHECKPOINT_FORMAT = "nasprune.train-checkpoint/1"

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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Checkpoint:
    """Where ``train`` saves its state after every epoch, and resumes from when the file exists.

    The model, optimiser, schedule, the batch/augmentation generator and the seconds spent so far are saved
    atomically, so a resumed run ends exactly where an uninterrupted one would. ``state``/``restore`` carry
    the caller's own per-epoch state (e.g. the scoring run's forgetting counts) in the same file. A file
    written under another ``TrainConfig`` is refused.
    """

    path: str | Path
    state: Callable[[], dict] = dict
    restore: Callable[[dict], None] = lambda state: None

    def save(self, payload: dict) -> None:
        write_torch(self.path, {"format": CHECKPOINT_FORMAT, **payload, "caller": self.state()})

    def load(self, config: TrainConfig) -> dict | None:
        path = Path(self.path)
        if not path.exists():
            return None
        payload = read_torch(path, ArtifactError, "readable training checkpoint", "delete it to start the "
                             "training again")
        check_format(payload.get("format") if isinstance(payload, dict) else None, CHECKPOINT_FORMAT, path,
                     ArtifactError, "nasprune training checkpoint")
        if {**config_defaults(), **payload["config"]} != config.to_dict():  # settings added since: their defaults
            raise ArtifactError(f"{path}: a checkpoint of another training config ({payload['config']} against "
                                f"{config.to_dict()}); delete it to start again")
        return payload


def config_defaults() -> dict:
    """Every ``TrainConfig`` setting at its default: what a stored config written before a setting existed
    counts it as (checkpoints here, study identities in ``nasprune/jobs.py``)."""
    return TrainConfig().to_dict()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_float(x: torch.Tensor, mean, std, device: torch.device) -> torch.Tensor:
    """uint8 images -> normalised float32 on ``device`` (float input is taken as already in [0, 1])."""
    x = x.to(device)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (x - m) / s


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding, per-example offsets) and horizontal flip of a batch, as tensor ops."""
    n, _, h, w = x.shape
    dev = x.device
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (n,1,h,1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (n,1,1,w)
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator, device=dev) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> float:
    """Accuracy in percent of ``model`` on normalised images ``x``, in batches of ``batch_size`` (counted
    on the device, read back once)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    for i in range(0, len(y), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum()
    model.train(was_training)
    return 100.0 * correct.item() / max(len(y), 1)


def _lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    if schedule == "step":
        return lambda step: 0.1 if step >= total_steps // 2 else 1.0
    return lambda step: 1.0


def train(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    config: TrainConfig,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_epoch: Callable[[int, nn.Module, Callable[[], float | None]], None] | None = None,
    on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Train ``model`` in place on (train_x, train_y) and evaluate it on ``val`` and on ``test`` (unless
    ``config.eval_test`` is False: the test split costs as much as the validation split to evaluate).

    With ``config.eval_every`` N > 0, the model is evaluated on ``val`` after every N-th epoch and after
    the last, and ``history`` records it as ``val_acc`` (its time is not counted in ``seconds``). Evaluation
    runs in eval mode without gradients and draws no random numbers, so the training itself (weights,
    batchnorm statistics, batch order) is the same with or without it (tests/test_compare.py checks the
    weights bit for bit).

    ``on_epoch(epoch, model, val_acc_fn)`` runs after every epoch (``val_acc_fn()`` evaluates on
    ``val``, or returns what ``eval_every`` has just measured); it may raise to stop the run, e.g.
    ``optuna.TrialPruned``. ``on_batch(indices, logits)`` sees every training step's example indices and
    detached logits (for forgetting statistics). With a ``checkpoint``, the state is saved after every epoch
    (after ``on_epoch``) and a run that finds the file resumes after its last saved epoch.
    """
    if train_x.ndim != 4 or len(train_x) != len(train_y) or len(train_y) == 0:
        raise ValueError(
            f"train_x must be (N, C, H, W) with N = len(train_y) > 0, got {tuple(train_x.shape)} "
            f"and {len(train_y)} labels"
        )
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    mean = config.mean
    std = config.std
    if mean is None or std is None:
        flat = (train_x.float() / (255 if train_x.dtype == torch.uint8 else 1)).transpose(0, 1).flatten(1)
        mean, std = tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp_min(1e-6).tolist())
    memory_format = torch.channels_last if (cuda and config.channels_last) else torch.contiguous_format

    def prepare(x, y):
        return to_float(x, mean, std, device).contiguous(memory_format=memory_format), y.to(device)

    x, y = prepare(train_x, train_y)
    val_t = prepare(*val) if val is not None else None
    test_t = prepare(*test) if test is not None and config.eval_test else None
    model.to(device=device, memory_format=memory_format).train()

    g = torch.Generator(device=device).manual_seed(config.seed)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=False)
    n = len(y)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(config.schedule, config.steps(n)))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and config.bf16)

    def val_acc() -> float | None:
        return evaluate(model, *val_t, config.eval_batch_size) if val_t is not None else None

    history: list[dict] = []
    diverged = False
    epoch_loss = float("nan")
    seen = 0
    epochs_done, seconds_before = 0, 0.0
    saved = checkpoint.load(config) if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        g.set_state(saved["generator"].to(g.get_state().device))
        epochs_done, seconds_before, seen = saved["epoch"], saved["seconds"], saved["seen"]
        history, epoch_loss = saved["history"], saved["train_loss"]
        checkpoint.restore(saved["caller"])
    start, evaluating = time.perf_counter(), 0.0
    for epoch in range(epochs_done, config.epochs):
        perm = torch.randperm(n, generator=g, device=device)
        loss_sum = torch.zeros((), device=device)
        count = 0
        for i in range(0, n, config.batch_size):
            idx = perm[i : i + config.batch_size]
            if len(idx) < 2 and n >= 2:  # batchnorm cannot train on a single example
                continue
            xb = augment(x[idx], config.crop_padding, config.flip, g)
            with autocast:
                logits = model(xb)
                loss = F.cross_entropy(logits, y[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            if on_batch is not None:
                on_batch(idx, logits.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            count += len(idx)
        seen += count
        if diverged:
            break
        epochs_done = epoch + 1
        epoch_loss = (loss_sum / max(count, 1)).item()
        history.append({"epoch": epochs_done, "train_loss": epoch_loss})
        measured = None
        if config.eval_every and val_t is not None and (epochs_done % config.eval_every == 0
                                                        or epochs_done == config.epochs):
            tick = time.perf_counter()
            measured = history[-1]["val_acc"] = val_acc()
            evaluating += time.perf_counter() - tick  # not training time
        if on_epoch is not None:
            on_epoch(epochs_done, model, val_acc if measured is None else lambda: measured)
        if checkpoint is not None:
            checkpoint.save({"config": config.to_dict(), "epoch": epochs_done, "model": model.state_dict(),
                             "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                             "generator": g.get_state().cpu(), "history": history, "train_loss": epoch_loss,
                             "seen": seen, "seconds": seconds_before + time.perf_counter() - start - evaluating})
    if cuda:
        torch.cuda.synchronize()
    seconds = seconds_before + time.perf_counter() - start - evaluating
    state = [t for t in model.state_dict().values() if t.is_floating_point()]  # parameters and BN statistics
    if diverged or not all(torch.isfinite(t).all() for t in state):
        diverged = True
        epoch_loss = float("nan")
    last = history[-1] if history else {}
    final_val = last["val_acc"] if "val_acc" in last and last["epoch"] == epochs_done else val_acc()
    return TrainResult(
        train_loss=epoch_loss,
        val_acc=final_val,
        test_acc=evaluate(model, *test_t, config.eval_batch_size) if test_t is not None else None,
        epochs=epochs_done,
        seconds=seconds,
        images_per_sec=seen / seconds if seconds > 0 else 0.0,
        diverged=diverged,
        history=history,
    )


def train_candidate(candidate: str | ConvNetSpec, dataset: Dataset, train_x: torch.Tensor, train_y: torch.Tensor,
                    config: TrainConfig, *, on_epoch=None) -> TrainResult:
    """Build one ConvNet candidate and train it on (train_x, train_y): the one job of every search.

    The candidate's initial weights come from ``config.seed`` (``build_convnet(..., seed=)``, so the global
    RNG is untouched), as does its batch order; it is evaluated on the dataset's val split, and on its test
    split unless ``config.eval_test`` is False. ``mean``/``std`` left None in ``config`` mean the dataset's, so
    every training set of an experiment is normalised alike. The runner, the Optuna helper, the benchmarks
    and the claim scripts all train candidates through this function.
    """
    spec = ConvNetSpec.from_id(candidate) if isinstance(candidate, str) else candidate
    model = build_convnet(spec, dataset.in_channels, dataset.image_size, dataset.num_classes, seed=config.seed)
    if config.mean is None or config.std is None:
        config = replace(config, mean=config.mean or dataset.mean, std=config.std or dataset.std)
    return train(model, train_x, train_y, config, val=(dataset.val_x, dataset.val_y),
                 test=(dataset.test_x, dataset.test_y), on_epoch=on_epoch)
