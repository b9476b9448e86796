"""The scoring run: a killed run resumes from its last epoch and ends exactly where an uninterrupted one does."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nasprune.scoring import ScoringConfig, ScoringError, ScoringRun, run_scoring

CONFIG = dict(spec="w8-d1-relu-batchnorm-avgpooling", bottleneck=8, epochs=8, score_epoch=2, lr=0.05)
CHILD = """
import sys, torch
from nasprune.data import load_dataset
from nasprune.scoring import ScoringConfig, run_scoring
torch.set_num_threads(int(sys.argv[2]))  # as the parent: float sums depend on the thread count
run_scoring(load_dataset("synthetic"), ScoringConfig(**{config}), checkpoint=sys.argv[1])
"""


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
    assert 1 <= saved_epoch < CONFIG["epochs"]

    resumed = run_scoring(synthetic, ScoringConfig(**CONFIG), checkpoint=checkpoint)
    assert not checkpoint.exists()  # removed once the run is complete
    whole = run_scoring(synthetic, ScoringConfig(**CONFIG))
    for name in ("features", "logits", "weight", "forgetting", "el2n", "grand"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
    assert resumed.val_acc == whole.val_acc


def test_a_checkpoint_of_another_config_is_refused(tmp_path, synthetic):
    checkpoint = tmp_path / "scoring.ckpt"
    config = ScoringConfig(**{**CONFIG, "epochs": 2, "score_epoch": 1})
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
