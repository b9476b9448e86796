"""The scoring run: a killed run resumes from its last epoch and ends exactly where an uninterrupted one does."""

import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace

import pytest
import torch

from nasprune.config import from_mapping
from nasprune.errors import ScoringError
from nasprune.proxies import ScoringConfig, ScoringRun, load_or_run, run_scoring

CONFIG = dict(spec="w8-d1-relu-batchnorm-avgpooling", bottleneck=8, score_epoch=2,
              train={"epochs": 8, "lr": 0.05})
CHILD = """
import sys, torch
from nasprune.data import load_dataset
from nasprune.config import from_mapping
from nasprune.proxies import ScoringConfig, run_scoring
torch.set_num_threads(int(sys.argv[2]))  # as the parent: float sums depend on the thread count
run_scoring(load_dataset("synthetic"), from_mapping(ScoringConfig, {config}), checkpoint=sys.argv[1])
"""


@pytest.mark.slow
def test_a_killed_scoring_run_resumes_to_the_same_result(tmp_path, synthetic):
    checkpoint = tmp_path / "scoring.ckpt"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(config=CONFIG), str(checkpoint),
                              str(torch.get_num_threads())])
    try:
        deadline = time.time() + 120
        while not checkpoint.exists() and child.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)  # somewhere after the first epoch's checkpoint
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL and checkpoint.exists()
    saved_epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= saved_epoch < CONFIG["train"]["epochs"]

    resumed = run_scoring(synthetic, from_mapping(ScoringConfig, CONFIG), checkpoint=checkpoint)
    assert not checkpoint.exists()  # removed once the run is complete
    whole = run_scoring(synthetic, from_mapping(ScoringConfig, CONFIG))
    for name in ("features", "logits", "weight", "forgetting", "el2n", "grand"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
    assert resumed.val_acc == whole.val_acc


def test_a_checkpoint_of_another_config_is_refused(tmp_path, synthetic):
    checkpoint = tmp_path / "scoring.ckpt"
    config = from_mapping(ScoringConfig, {**CONFIG, "train": {**CONFIG["train"], "epochs": 2}, "score_epoch": 1})
    run_scoring(synthetic, config, checkpoint=checkpoint)  # completes and removes its checkpoint
    assert not checkpoint.exists()
    torch.save({"format": "nasprune.train-checkpoint/1", "config": {"epochs": 99}}, checkpoint)
    with pytest.raises(ValueError, match=r"scoring.ckpt: a checkpoint of another training config"):
        run_scoring(synthetic, config, checkpoint=checkpoint)
    checkpoint.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"scoring.ckpt: not a readable training checkpoint"):
        run_scoring(synthetic, config, checkpoint=checkpoint)


def test_a_garbage_scoring_file_is_one_clear_line(tmp_path):
    path = tmp_path / "scores.pt"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(ScoringError) as info:
        ScoringRun.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a nasprune scoring-run file") and "\n" not in message
    assert "weights_only" not in message and "file an issue" not in message


def test_a_scoring_file_recording_the_flat_config_of_earlier_versions_is_reused_under_the_same_config(tmp_path,
                                                                                                     synthetic):
    """scoring.pt files made before ScoringConfig.train record the config flat (and without the TrainConfig
    settings added since): one made with the asked settings is reused, one made with others still refused."""
    config = from_mapping(ScoringConfig, {**CONFIG, "train": {"epochs": 1, "lr": 0.05}, "score_epoch": 1})
    path = tmp_path / "scoring.pt"
    run, loaded = load_or_run(path, synthetic, config)
    assert not loaded and run.config["train"]["epochs"] == 1
    flat = {"spec": config.spec, "bottleneck": 8, "epochs": 1, "score_epoch": 1, "batch_size": 256, "lr": 0.05,
            "weight_decay": 5e-4, "seed": 0, "device": "cpu"}  # the fields of ScoringConfig before train
    doc = torch.load(path, weights_only=True)
    torch.save({**doc, "config": flat}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file is not the user's config: no FutureWarning
        again, loaded = load_or_run(path, synthetic, config)
    assert loaded and again.config == flat and torch.equal(again.features, run.features)
    assert load_or_run(path, synthetic, replace(config, train=replace(config.train, device="cpu")))[1]
    for other, named in [(replace(config, train=replace(config.train, epochs=2)), r"train.epochs 1 -> 2"),
                         (replace(config, bottleneck=4), r"bottleneck 8 -> 4")]:
        with pytest.raises(ScoringError, match=rf"scoring.pt: a scoring run with other settings than asked "
                                               rf"\(setting made -> asked: {named}\)"):
            load_or_run(path, synthetic, other)
