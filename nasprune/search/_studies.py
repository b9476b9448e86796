"""An experiment's studies: one Optuna study per training set, named ``"{experiment}:{training set}"``, whose stored
identity (the training config, the proxy's images, the data) is checked on every run, so that a changed experiment
is refused instead of mixed with finished jobs; and the jobs inside a study, one per (candidate, seed).
"""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from nasprune.artifacts import changed_settings, jsonable, show_changes
from nasprune.errors import ExperimentError
from nasprune.training import config_defaults
from search_spaces.convnet import ACTIVATIONS, NORMS, POOLINGS

__all__ = ["DISTRIBUTIONS", "SPEED_ONLY", "by_job", "check_study", "ensure_study", "job_key"]

#: Wide, fixed distributions of a job's params: every trial of every experiment stays compatible with every other.
DISTRIBUTIONS = {
    "width": IntDistribution(1, 1 << 16), "depth": IntDistribution(1, 1 << 10),
    "act": CategoricalDistribution(ACTIVATIONS), "norm": CategoricalDistribution(NORMS),
    "pool": CategoricalDistribution(POOLINGS), "seed": IntDistribution(0, 2**31 - 1),
}
#: TrainConfig settings that change speed, not results: a study made under another value is the same study.
SPEED_ONLY = ("eval_batch_size",)


def _comparable(config: dict) -> dict:
    """A study's identity as compared: TrainConfig settings added since the study was made count as their
    defaults, and settings that change only speed (``SPEED_ONLY``) are left out."""
    if not isinstance(config.get("train"), dict):
        return config
    defaults = {k: v for k, v in config_defaults().items() if k != "seed"}
    train = {**jsonable(defaults), **config["train"]}
    return {**config, "train": {k: v for k, v in train.items() if k not in SPEED_ONLY}}


def check_study(storage, name: str, config: dict) -> int | None:
    """The id of study ``name`` (None if there is none yet); refuse one made with another configuration.
    Only reads."""
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    stored = storage.get_study_user_attrs(sid).get("config")
    diff = {} if stored is None else changed_settings(_comparable(stored), _comparable(config))
    if diff:
        raise ExperimentError(
            f"study {name!r} was run with another configuration (setting stored -> now): {show_changes(diff)}; "
            "restore the old config, or start a new experiment (another name, or another storage)")
    return sid


def ensure_study(storage, name: str, config: dict, info: dict) -> int:
    """Create study ``name`` if needed and record its configuration (checked on every later run) and
    facts for reports (``info``)."""
    sid = check_study(storage, name, config)
    if sid is None:
        try:
            sid = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:  # another process made it just now
            sid = check_study(storage, name, config)
    attrs = storage.get_study_user_attrs(sid)
    if attrs.get("config") is None:
        storage.set_study_user_attr(sid, "config", config)
    if attrs.get("info") != info:
        storage.set_study_user_attr(sid, "info", info)
    return sid


def job_key(candidate: str, seed: int) -> str:
    return f"{candidate}|seed={seed}"


def by_job(storage, sid: int) -> dict[str, list[FrozenTrial]]:
    """The study's trials grouped by job, in trial order."""
    out: dict[str, list[FrozenTrial]] = {}
    for t in sorted(storage.get_all_trials(sid, deepcopy=False), key=lambda t: t.number):
        out.setdefault(t.user_attrs.get("job"), []).append(t)
    return out
