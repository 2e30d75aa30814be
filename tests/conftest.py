import pytest
import torch

from hashbench.harness.config import load_config


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield


@pytest.fixture(scope="session")
def config():
    return load_config()
