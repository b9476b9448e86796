import pytest
import torch

from nasprune.data import load_dataset


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST data from the Debian package, split 50,000 / 10,000 / 10,000."""
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def synthetic():
    return load_dataset("synthetic")
