import pickle

import numpy as np
import pytest
import torch

from nasprune import data as data_mod
from nasprune.data import load_dataset, stratified_split
from nasprune.errors import DatasetError


@pytest.mark.slow
def test_fashion_mnist_from_debian_files(fmnist):
    d = fmnist
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (50_000, 10_000, 10_000)
    assert d.train_x.shape == (50_000, 1, 28, 28) and d.train_x.dtype == torch.uint8
    assert d.train_y.dtype == torch.int64 and d.num_classes == 10 and d.classes[0] == "T-shirt/top"
    # stratified: every class gives exactly a tenth of the validation split
    assert torch.bincount(d.val_y).tolist() == [1000] * 10
    # the official test set, in its order
    assert d.test_y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert len(d.fingerprint) == 64


@pytest.mark.slow
def test_fingerprint_stable_and_split_depends_on_seed(fmnist):
    again = load_dataset("fashion-mnist")
    assert again.fingerprint == fmnist.fingerprint
    assert torch.equal(again.val_y, fmnist.val_y)
    other = load_dataset("fashion-mnist", seed=1)
    assert other.fingerprint != fmnist.fingerprint
    assert not torch.equal(other.val_x, fmnist.val_x)
    assert torch.equal(other.test_x, fmnist.test_x)


def test_stratified_split_is_exact_and_disjoint():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    tr, va = stratified_split(labels, 10, seed=3)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    assert np.bincount(labels[va].numpy()).tolist() == [5, 3, 2]
    with pytest.raises(DatasetError, match="val_size must be in"):
        stratified_split(labels, 100, seed=0)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; choose one of fashion-mnist"):
        load_dataset("imagenet")


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_missing_torchvision_dataset_says_download(tmp_path):
    with pytest.raises(DatasetError, match="download=True"):
        load_dataset("cifar10", root=tmp_path)


def _fake_cifar10(root, n_per_batch=20):
    """Files in the layout torchvision's CIFAR10 reads, with made-up pixels."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": list(np.arange(n_per_batch) % 10)}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return batch["data"]


def test_cifar10_path_through_torchvision_with_a_stand_in(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    test_data = _fake_cifar10(tmp_path)
    # the stand-in files have other checksums than the real archive
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    d = load_dataset("cifar10", root=tmp_path, val_size=10)
    assert d.train_x.shape == (90, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.mean == (0.4914, 0.4822, 0.4465) and d.num_classes == 10
    # channel-first conversion keeps pixels in place: HWC row-major -> CHW
    assert torch.equal(d.test_x[0], torch.as_tensor(test_data[0].reshape(3, 32, 32)))


def test_synthetic_is_small_and_deterministic(synthetic):
    again = load_dataset("synthetic")
    assert again.fingerprint == synthetic.fingerprint
    assert synthetic.train_x.shape[1:] == (1, 16, 16) and synthetic.num_classes == 4
