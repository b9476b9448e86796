"""What every process of a search loads once (the experiment, its dataset, each training set's tensors and training
config, each study's identity), and one job, or one fused group of jobs, trained from it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from nasprune import __version__
from nasprune.artifacts import jsonable
from nasprune.data import Dataset
from nasprune.proxies import ProxySet
from nasprune.training import TrainConfig, TrainResult, train_candidate, train_fused
from search_spaces.convnet import ConvNetSpec, block_shapes

from ._experiment import Experiment
from ._store import Job

__all__ = ["Loaded", "group_keys", "load", "train_group", "train_job"]


@dataclass
class Loaded:
    """An experiment with its dataset and training tensors loaded, and each study's identity."""

    experiment: Experiment
    directory: Path
    dataset: Dataset
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]]
    train_configs: dict[str, TrainConfig]  # each training set's, with the dataset's normalisation (seed 0)
    identity: dict[str, dict]  # must equal the study's stored config
    info: dict[str, dict]  # facts for reports: images, bytes, method, proxy_minutes


def load(directory: Path) -> Loaded:
    """Load the experiment, its dataset and proxies; refuse candidates or proxies that do not fit the data."""
    exp = Experiment.load(directory)
    ds = exp.dataset.load()
    for c in exp.candidates:
        block_shapes(ConvNetSpec.from_id(c), ds.in_channels, ds.image_size)  # SpecError if the map vanishes
    sets, configs, identity, info = {}, {}, {}, {}
    pixels = ds.in_channels * ds.image_size * ds.image_size
    for ts, entry in exp.training_sets.items():
        path = exp.proxy_path(ts, directory)
        if path is None:
            sets[ts], proxy_desc, method, minutes = (ds.train_x, ds.train_y), None, "whole", 0.0
        else:
            proxy = ProxySet.load(path, ds)  # ProxyError: corrupted, or built on other data
            sets[ts], method, minutes = proxy.tensors(ds), proxy.method, proxy.build_minutes()
            proxy_desc = {"method": proxy.method, "images": len(proxy),
                          "indices_sha256": hashlib.sha256(proxy.indices.astype("int64").tobytes()).hexdigest()}
        configs[ts] = entry.config(ds.mean, ds.std)
        config = configs[ts].to_dict()
        config.pop("seed")
        identity[ts] = jsonable({
            "experiment": exp.name, "training_set": ts, "proxy": proxy_desc, "train": config,
            "dataset": {**_dataset_identity(exp), "fingerprint": ds.fingerprint}})
        n = len(sets[ts][1])
        info[ts] = {"images": n, "bytes": n * pixels, "method": method, "proxy_minutes": minutes,
                    "version": __version__}
    return Loaded(exp, Path(directory), ds, sets, configs, identity, info)


def _dataset_identity(exp: Experiment) -> dict:
    """The split as studies record it (the root may differ by host; a stored experiment never downloads)."""
    return {k: v for k, v in dataclasses.asdict(exp.dataset).items() if k != "download"} | {"root": None}


# --- one job -----------------------------------------------------------------------------------------------------


def train_job(loaded: Loaded, training_set: str, candidate: str, seed: int) -> TrainResult:
    """One job: the candidate trained on the training set under its seed (:func:`nasprune.training.train_candidate`)."""
    x, y = loaded.sets[training_set]
    return train_candidate(candidate, loaded.dataset, x, y, dataclasses.replace(loaded.train_configs[training_set],
                                                                                seed=seed))


def train_group(loaded: Loaded, group: list[Job]) -> list[TrainResult]:
    """A fused group's jobs (one candidate; one training config but the seed; training sets of one size) trained
    as one network by :func:`nasprune.training.train_fused`, each as :func:`train_job` would train it alone;
    one result per job, in order."""
    candidates = {j.candidate for j in group}
    if len(candidates) != 1:
        raise ValueError(f"a fused group trains one candidate, got {sorted(candidates)}; group jobs by candidate")
    ds = loaded.dataset
    config = loaded.train_configs[group[0].training_set]  # its seed is not used: each job has its own
    return train_fused(group[0].candidate, [loaded.sets[j.training_set] for j in group], [j.seed for j in group],
                       config, in_channels=ds.in_channels, image_size=ds.image_size, num_classes=ds.num_classes,
                       val=(ds.val_x, ds.val_y), test=(ds.test_x, ds.test_y))


def group_keys(loaded: Loaded) -> dict[str, str]:
    """Per training set, what the jobs of one fused group must share besides their candidate: the training
    config but the seed (``train_fused`` trains every member under one config) and the training set's shape
    (its size: members train on sets of one size, batch by batch)."""
    keys = {}
    for ts, train_config in loaded.train_configs.items():
        config = {k: v for k, v in train_config.to_dict().items() if k != "seed"}
        keys[ts] = json.dumps([config, list(loaded.sets[ts][0].shape)], sort_keys=True)
    return keys
