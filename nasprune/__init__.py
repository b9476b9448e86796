"""nasprune: cheap neural architecture search on proxy sets.

The package is laid out by stage, and data flows one way (README.md, "The Python API"):

- :mod:`nasprune.data`: datasets as tensors, splits, fingerprints;
- :mod:`nasprune.training`: the training loop (and K members trained as one fused network);
- :mod:`nasprune.proxies`: the scoring run, influence, the selection methods and the proxy-set artifact;
- :mod:`nasprune.search`: experiments, their jobs in Optuna storage, the runner and its status;
- :mod:`nasprune.analysis`: metrics against the whole set, the random null, reports and plots;
- :mod:`nasprune.workflows`: several stages at once (``nasprune run``, ``nasprune compare``, rate grids).

Each public name has one import path, its stage's (``from nasprune.search import run_search``). Importing
``nasprune`` itself loads nothing heavy, so ``nasprune --help`` answers at once.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
