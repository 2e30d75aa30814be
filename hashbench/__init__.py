"""hashbench: adversarial robustness of deep-hashing image retrieval, benchmarked end to end."""

__version__ = "0.1.0"
