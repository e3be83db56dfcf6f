"""Fixtures of the Problem 1 tests; helpers live in fixtures.py."""
import pytest
import torch

from tests.p1.fixtures import save_tiny_checkpoint, save_tiny_guide_classifier, write_digit_layout

# Tiny tensors: one thread is faster than several, and much faster on a busy machine.
torch.set_num_threads(1)


@pytest.fixture
def digit_layout(tmp_path):
    return write_digit_layout(tmp_path / "digits")


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_tiny_checkpoint(tmp_path / "tiny.pt")


@pytest.fixture
def tiny_guide_classifier(tmp_path):
    return save_tiny_guide_classifier(tmp_path / "guide.pt")
