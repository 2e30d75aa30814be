"""Retrieval metrics, the public names (DESIGN.md): MAP@k, P@N, R@N, precision within a Hamming
radius and the PR curve.  They are defined in :mod:`hashbench.retrieval.metrics`."""

from hashbench.retrieval.metrics import (DEFAULT_RADIUS, map_at_k, pr_curve, precision_at_n, precision_at_radius,
                                         ranking_backend, recall_at_n, retrieval_metrics)

__all__ = ["DEFAULT_RADIUS", "map_at_k", "pr_curve", "precision_at_n", "precision_at_radius", "ranking_backend",
           "recall_at_n", "retrieval_metrics"]
