"""fuadnb: fully unsupervised anomaly detection, a runnable book.

Importing it does no work: no downloads, no CUDA initialisation.
"""

__version__ = "0.1.0"

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

__all__ = ["config", "data", "engine", "evaluate", "experiment", "metrics", "models",
           "nn", "runs", "utils"]
