"""Datasets (integration in progress)."""
