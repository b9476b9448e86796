"""Training: one loop with the data kept on the device (:func:`train`), the one job of every search
(:func:`train_candidate`), and K members of one spec trained as one fused network (:func:`train_fused`), which
reuses the loop's own setup.
"""

from ._checkpoint import Checkpoint
from ._config import TrainConfig, TrainResult, config_defaults
from ._fused import FusedConvNet, build_fused_convnet, train_fused, train_fused_net
from ._loop import augment, evaluate, resolve_device, to_float, train, train_candidate

__all__ = ["Checkpoint", "FusedConvNet", "TrainConfig", "TrainResult", "augment", "build_fused_convnet",
           "config_defaults", "evaluate", "resolve_device", "to_float", "train", "train_candidate", "train_fused",
           "train_fused_net"]
