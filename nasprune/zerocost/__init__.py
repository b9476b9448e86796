"""Zero-cost scores: how well a candidate will train, from its network at initialisation and one batch of
images, or from its architecture alone, in seconds for a whole pool and without any training.

Every score is in one registry (:func:`register_score`, :data:`SCORES`) and passes the conformance check
:mod:`nasprune.zerocost.testing`. :func:`score_candidates` scores a pool on one fixed, seeded batch of the
training split, timing each score; :func:`ensemble` aggregates their ranks. For every score a higher value ranks a
candidate higher.
"""

from ._registry import NEEDS, SCORES, ZeroCostScore, get_score, register_score

# registers the scores, in this order: naswot, synflow, grad_norm, snip, zico, params, flops
from . import _scores  # noqa: F401  (isort: skip)
from ._pool import Batch, compute_score, ensemble, fixed_batch, ranking_score, score_candidates

__all__ = ["NEEDS", "SCORES", "Batch", "ZeroCostScore", "compute_score", "ensemble", "fixed_batch", "get_score",
           "ranking_score", "register_score", "score_candidates"]
