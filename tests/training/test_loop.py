"""The training loop (nasprune/training/_loop.py): real training beats chance and repeats exactly, divergence,
schedules and augmentation, the per-epoch callback and validation, and checkpoints of earlier versions."""

import dataclasses

import pytest
import torch

from nasprune.training import Checkpoint, TrainConfig, augment, resolve_device, train
from search_spaces import build_convnet


def _fit(d, spec_id, seed=0, n=600, **overrides):
    torch.manual_seed(seed)
    model = build_convnet(spec_id, d.in_channels, d.image_size, d.num_classes)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 100, "lr": 0.05, "mean": d.mean, "std": d.std,
                         "seed": seed, **overrides})
    return train(model, d.train_x[:n], d.train_y[:n], cfg,
                 val=(d.val_x[:1000], d.val_y[:1000]), test=(d.test_x[:1000], d.test_y[:1000]))


@pytest.mark.slow
def test_tiny_real_training_beats_chance_and_repeats_exactly(fmnist):
    a = _fit(fmnist, "w16-d2-relu-batchnorm-avgpooling")
    b = _fit(fmnist, "w16-d2-relu-batchnorm-avgpooling")
    assert a.val_acc > 50 and a.test_acc > 50  # chance is 10%
    assert not a.diverged and a.epochs == 3 and a.images_per_sec > 0
    assert (a.val_acc, a.test_acc, a.train_loss) == (b.val_acc, b.test_acc, b.train_loss)
    c = _fit(fmnist, "w16-d2-relu-batchnorm-avgpooling", seed=1)
    assert c.train_loss != a.train_loss


@pytest.mark.slow
def test_divergence_returns_a_result(fmnist):
    r = _fit(fmnist, "w16-d2-relu-none-none", n=300, lr=1e4, momentum=0.9)
    assert r.diverged
    assert r.epochs < 3
    assert r.val_acc is not None  # evaluated anyway, so a runner can rank it last


def test_step_schedule_and_no_augmentation(synthetic):
    r = _fit(synthetic, "w8-d1-relu-batchnorm-maxpooling", schedule="step", crop_padding=0, flip=False,
             epochs=4, n=400)
    assert r.val_acc > 40 and len(r.history) == 4  # four classes, chance 25%


def test_augment_shapes_and_content():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = augment(x, padding=0, flip=False, generator=g)
    assert torch.equal(out, x)
    out = augment(x, padding=2, flip=True, generator=g)
    assert out.shape == x.shape
    # each crop is a window of the zero-padded image, flipped or not
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, r:r + 4, c:c + 4] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)


def test_on_epoch_callback_sees_val_accuracy_and_can_stop(synthetic):
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(epoch, model, val_acc):
        seen.append((epoch, val_acc()))
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(
            build_convnet("w8-d1-relu-none-avgpooling", 1, 16, 4), synthetic.train_x[:200],
            synthetic.train_y[:200], TrainConfig(epochs=5), val=(synthetic.val_x, synthetic.val_y),
            on_epoch=on_epoch)
    assert [e for e, _ in seen] == [1, 2] and all(0 <= a <= 100 for _, a in seen)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match=r"train_x must be \(N, C, H, W\)"):
        train(build_convnet("w8-d1-relu-none-none", 1, 8, 2), torch.zeros(4, 8, 8, dtype=torch.uint8),
              torch.zeros(4, dtype=torch.int64), TrainConfig(epochs=1))
    assert resolve_device("auto").type in ("cpu", "cuda")


# --- per-epoch validation -----------------------------------------------------------------------------------------


def _train(d, config: TrainConfig, checkpoint=None):
    model = build_convnet("w8-d1-relu-batchnorm-maxpooling", d.in_channels, d.image_size, d.num_classes, seed=0)
    result = train(model, d.train_x[:300], d.train_y[:300], config, val=(d.val_x, d.val_y),
                   test=(d.test_x, d.test_y), checkpoint=checkpoint)
    return model, result


def test_eval_every_records_val_acc_and_leaves_the_training_bit_identical(synthetic):
    base = TrainConfig(epochs=3, batch_size=64, lr=0.05, mean=synthetic.mean, std=synthetic.std)
    plain_model, plain = _train(synthetic, base)
    model, r = _train(synthetic, dataclasses.replace(base, eval_every=1))
    for (name, a), b in zip(plain_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name  # weights and batchnorm running statistics, bit for bit
    assert (r.val_acc, r.test_acc, r.train_loss) == (plain.val_acc, plain.test_acc, plain.train_loss)
    assert [h["epoch"] for h in r.history] == [1, 2, 3] and all("val_acc" not in h for h in plain.history)
    assert r.history[-1]["val_acc"] == r.val_acc and len({h["val_acc"] for h in r.history}) > 1
    assert [h["train_loss"] for h in r.history] == [h["train_loss"] for h in plain.history]
    _, every2 = _train(synthetic, dataclasses.replace(base, eval_every=2))
    assert ["val_acc" in h for h in every2.history] == [False, True, True]  # every 2nd epoch and the last
    assert every2.history[1]["val_acc"] == r.history[1]["val_acc"]
    with pytest.raises(ValueError, match="eval_every must be >= 0 .* got -1"):
        TrainConfig(eval_every=-1)


def test_a_checkpoint_written_before_eval_every_existed_still_resumes(synthetic, tmp_path):
    config = TrainConfig(epochs=2, batch_size=64, lr=0.05, mean=synthetic.mean, std=synthetic.std)
    path = tmp_path / "run.ckpt"
    _, first = _train(synthetic, config, Checkpoint(path))
    payload = torch.load(path, weights_only=True)
    del payload["config"]["eval_every"]  # as an older version wrote it
    torch.save(payload, path)
    _, resumed = _train(synthetic, config, Checkpoint(path))  # nothing left to train: the saved state
    assert (resumed.val_acc, resumed.train_loss) == (first.val_acc, first.train_loss)
    payload["config"]["epochs"] = 5
    torch.save(payload, path)
    with pytest.raises(ValueError, match="a checkpoint of another training config"):
        _train(synthetic, config, Checkpoint(path))


def test_tse_is_the_sum_of_every_epochs_mean_training_loss(synthetic):
    """TSE (Ru et al. 2021), recomputed from the logits each step saw: the cross-entropy of each batch, averaged over
    the epoch's images, summed over the epochs; NaN for a diverged run."""
    model = build_convnet("w8-d1-relu-none-avgpooling", synthetic.in_channels, synthetic.image_size,
                          synthetic.num_classes, seed=0)
    x, y = synthetic.train_x[:300], synthetic.train_y[:300]
    batch_losses = []
    result = train(model, x, y, TrainConfig(epochs=3, batch_size=64), on_batch=lambda idx, logits: batch_losses.append(
        (float(torch.nn.functional.cross_entropy(logits, y[idx], reduction="sum")), len(idx))))
    per_epoch = len(batch_losses) // 3
    means = [sum(s for s, _ in batch_losses[e * per_epoch:(e + 1) * per_epoch]) /
             sum(n for _, n in batch_losses[e * per_epoch:(e + 1) * per_epoch]) for e in range(3)]
    assert result.tse == pytest.approx(sum(means), rel=1e-5) and result.train_loss == pytest.approx(means[-1], rel=1e-5)
    assert dataclasses.replace(result, diverged=True).tse != dataclasses.replace(result, diverged=True).tse  # NaN


def test_val_images_validates_on_a_fixed_stratified_part_of_the_split(fmnist):
    """``val_images`` n: the validation accuracy is the model's accuracy on n images of the split, each class in
    proportion to its share (checked by counting), the same n for every call, in the unfused loop and the fused one."""
    import numpy as np

    from nasprune.training import build_fused_convnet, evaluate, to_float, train_fused_net
    from nasprune.training._loop import validation_part

    d = fmnist
    val = (d.val_x[:1000], d.val_y[:1000])
    part_x, part_y = validation_part(val, TrainConfig(val_images=200))
    assert len(part_y) == 200 and torch.equal(validation_part(val, TrainConfig(val_images=200))[0], part_x)
    counts, share = np.bincount(part_y.numpy(), minlength=10), np.bincount(val[1].numpy(), minlength=10) / 1000
    assert np.abs(counts - 200 * share).max() < 1  # largest remainders: each class within one image of its share
    rows = {tuple(r) for r in val[0].reshape(1000, -1).tolist()}
    assert all(tuple(r) in rows for r in part_x.reshape(200, -1).tolist())  # a part of the split
    assert validation_part(val, TrainConfig(val_images=5000)) is val and validation_part(val, TrainConfig()) is val

    torch.manual_seed(0)
    model = build_convnet("w8-d1-relu-none-avgpooling", d.in_channels, d.image_size, d.num_classes)
    cfg = TrainConfig(epochs=1, batch_size=100, lr=0.05, mean=d.mean, std=d.std, val_images=200)
    result = train(model, d.train_x[:300], d.train_y[:300], cfg, val=val)
    expected = evaluate(model.eval(), to_float(part_x, d.mean, d.std, torch.device("cpu")), part_y)
    assert result.val_acc == expected and result.val_acc != evaluate(
        model, to_float(val[0], d.mean, d.std, torch.device("cpu")), val[1])  # the part, not the whole split
    net = build_fused_convnet("w8-d1-relu-none-avgpooling", d.in_channels, d.image_size, d.num_classes, [0, 1])
    fused = train_fused_net(net, [(d.train_x[:300], d.train_y[:300])] * 2, [0, 1], cfg, val=val)
    member = net.member_state(0)
    torch.manual_seed(0)
    alone = build_convnet("w8-d1-relu-none-avgpooling", d.in_channels, d.image_size, d.num_classes)
    alone.load_state_dict(member)
    assert fused[0].val_acc == evaluate(alone.eval(), to_float(part_x, d.mean, d.std, torch.device("cpu")), part_y)
    with pytest.raises(ValueError, match="val_images must be >= 1"):
        TrainConfig(val_images=0)
