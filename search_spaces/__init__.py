"""Search spaces for nasprune: the 720-ConvNet family of Dataset Condensation."""

from search_spaces.convnet import (
    ACTIVATIONS,
    DEPTHS,
    NORMS,
    POOLINGS,
    WIDTHS,
    ConvNet,
    ConvNetSpec,
    SpecError,
    build_convnet,
    convnet_720,
    count_flops,
    count_params,
    feature_dim,
)
from search_spaces.subsets import stratified_subset

__all__ = [
    "ACTIVATIONS", "DEPTHS", "NORMS", "POOLINGS", "WIDTHS", "ConvNet", "ConvNetSpec", "SpecError",
    "build_convnet", "convnet_720", "count_flops", "count_params", "feature_dim",
    "stratified_subset",
]
