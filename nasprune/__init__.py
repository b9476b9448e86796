"""nasprune: cheap neural architecture search on proxy sets chosen by dataset pruning."""

__version__ = "0.1.0"

from nasprune.data import DATASETS, Dataset, DatasetError, load_dataset
from nasprune.train import TrainConfig, TrainResult, resolve_device, train

__all__ = [
    "__version__", "DATASETS", "Dataset", "DatasetError", "load_dataset",
    "TrainConfig", "TrainResult", "resolve_device", "train",
]
