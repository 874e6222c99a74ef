"""fuadnb: fully unsupervised anomaly detection, a runnable book.

Importing it does no work: no downloads, no CUDA initialisation.
"""

from fuadnb import (
    config,
    data,
    engine,
    evaluate,
    experiment,
    metrics,
    models,
    nn,
    runs,
    utils,
)
from fuadnb.utils import __version__ as __version__

__all__ = ["config", "data", "engine", "evaluate", "experiment", "metrics", "models",
           "nn", "runs", "utils"]
