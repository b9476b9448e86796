"""One short training loop with the whole training set kept as a tensor on the device.

No DataLoader: batches are slices of a seeded permutation, and augmentation (random crop with
zero padding, horizontal flip) is a batched tensor op, as in airbench. A NaN or inf loss ends the
run with ``diverged=True`` instead of raising, because sigmoid and unnormalised nets do diverge.

The setup every loop shares (normalisation, the optimiser and its schedule, memory format, autocast, the batches
of an epoch, the divergence check) is one function each here; the fused loop (``_fused.py``) calls the same ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasprune.data import Dataset, stratified_split
from search_spaces.convnet import ConvNetSpec, build_convnet

from ._checkpoint import Checkpoint
from ._config import TrainConfig, TrainResult

__all__ = ["augment", "evaluate", "resolve_device", "to_float", "train", "train_candidate"]


# --- the setup every loop shares ----------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalisation(x: torch.Tensor, config: TrainConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel that the images ``x`` are normalised with: the config's, else the set's own."""
    if config.mean is not None and config.std is not None:
        return tuple(config.mean), tuple(config.std)
    flat = (x.float() / (255 if x.dtype == torch.uint8 else 1)).transpose(0, 1).flatten(1)
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp_min(1e-6).tolist())


def to_float(x: torch.Tensor, mean, std, device: torch.device) -> torch.Tensor:
    """uint8 images -> normalised float32 on ``device`` (float input is taken as already in [0, 1])."""
    x = x.to(device)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (x - m) / s


def memory_format(device: torch.device, config: TrainConfig) -> torch.memory_format:
    """channels_last where the config asks for it and the device is CUDA; contiguous otherwise."""
    return torch.channels_last if (device.type == "cuda" and config.channels_last) else torch.contiguous_format


def autocast(device: torch.device, config: TrainConfig) -> torch.autocast:
    """bf16 autocast where the config asks for it and the device is CUDA; a no-op otherwise."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and config.bf16)


def lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate's factor at each step of a run of ``total_steps``: cosine, step (x0.1 at half) or constant."""
    if schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    if schedule == "step":
        return lambda step: 0.1 if step >= total_steps // 2 else 1.0
    return lambda step: 1.0


def optimiser(parameters: Iterable[torch.Tensor], config: TrainConfig,
              n: int) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with the config's momentum and weight decay, and its schedule over the steps of training on ``n``
    images (:meth:`TrainConfig.steps`), stepped once per batch."""
    opt = torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                          nesterov=False)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(config.schedule, config.steps(n)))


def batches(perm: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """The index batches of one epoch, slices of the permutation ``perm`` along its last dimension. A last batch
    of one example is skipped (batchnorm cannot train on it), unless the set has only one."""
    n = perm.shape[-1]
    for i in range(0, n, batch_size):
        idx = perm[..., i : i + batch_size]
        if idx.shape[-1] >= 2 or n < 2:
            yield idx


def finite(state: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state (parameters and batchnorm statistics) is finite."""
    return all(torch.isfinite(t).all() for t in state if t.is_floating_point())


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


# --- the loop -------------------------------------------------------------------------------------------------


def validation_part(val: tuple[torch.Tensor, torch.Tensor], config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``config.val_images`` images of ``val``, stratified by class under a fixed seed (every job of every
    candidate is validated on the same ones), or all of ``val`` when None or at least its size."""
    x, y = val
    if config.val_images is None or config.val_images >= len(y):
        return val
    part = torch.as_tensor(stratified_split(y, config.val_images, seed=0)[1])
    return x[part], y[part]


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
    batchnorm statistics, batch order) is the same with or without it (tests/training/test_loop.py checks the
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
    mean, std = normalisation(train_x, config)
    layout = memory_format(device, config)

    def prepare(x, y):
        return to_float(x, mean, std, device).contiguous(memory_format=layout), y.to(device)

    x, y = prepare(train_x, train_y)
    val_t = prepare(*validation_part(val, config)) if val is not None else None
    test_t = prepare(*test) if test is not None and config.eval_test else None
    model.to(device=device, memory_format=layout).train()

    g = torch.Generator(device=device).manual_seed(config.seed)
    n = len(y)
    opt, sched = optimiser(model.parameters(), config, n)

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
        for idx in batches(perm, config.batch_size):
            xb = augment(x[idx], config.crop_padding, config.flip, g)
            with autocast(device, config):
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
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = seconds_before + time.perf_counter() - start - evaluating
    if diverged or not finite(model.state_dict().values()):
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
    every training set of an experiment is normalised alike. The runner, the Optuna objective, the benchmarks
    and the studies all train candidates through this function.
    """
    spec = ConvNetSpec.from_id(candidate) if isinstance(candidate, str) else candidate
    model = build_convnet(spec, dataset.in_channels, dataset.image_size, dataset.num_classes, seed=config.seed)
    if config.mean is None or config.std is None:
        config = replace(config, mean=config.mean or dataset.mean, std=config.std or dataset.std)
    return train(model, train_x, train_y, config, val=(dataset.val_x, dataset.val_y),
                 test=(dataset.test_x, dataset.test_y), on_epoch=on_epoch)
