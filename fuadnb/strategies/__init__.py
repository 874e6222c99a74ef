"""Strategies around a detection method (they call its module surface and nothing
method-specific): `llb`, filtering the training set by learning bias."""
