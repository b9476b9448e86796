"""The training checkpoint: :func:`~nasprune.training.train` saves its state after every epoch and resumes from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nasprune.artifacts import check_format, read_torch, write_torch
from nasprune.errors import ArtifactError

from ._config import TrainConfig, config_defaults

__all__ = ["Checkpoint"]

FORMAT = "nasprune.train-checkpoint/1"


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
        write_torch(self.path, {"format": FORMAT, **payload, "caller": self.state()})

    def load(self, config: TrainConfig) -> dict | None:
        path = Path(self.path)
        if not path.exists():
            return None
        payload = read_torch(path, ArtifactError, "readable training checkpoint", "delete it to start the "
                             "training again")
        check_format(payload.get("format") if isinstance(payload, dict) else None, FORMAT, path,
                     ArtifactError, "nasprune training checkpoint")
        if {**config_defaults(), **payload["config"]} != config.to_dict():  # settings added since: their defaults
            raise ArtifactError(f"{path}: a checkpoint of another training config ({payload['config']} against "
                                f"{config.to_dict()}); delete it to start again")
        return payload
