"""Checkpoints are loaded with ``weights_only`` (issue 19, item 10): a hostile ``.pt`` file
cannot run code, and a real one still loads completely (test_train.py::test_resume_is_exact
checks that a resume from it is exact)."""
import os

import numpy as np
import pytest
import torch

from liccodec.errors import UsageError
from liccodec.train.export import model_from_checkpoint
from liccodec.train.loop import load_checkpoint


class Payload:
    """Unpickling this calls os.makedirs(marker): code run by merely loading a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_a_hostile_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save({"recipe": {"model": {"arch": "msh"}}, "ema": Payload(marker)}, path)
    with pytest.raises(UsageError, match="refusing"):
        load_checkpoint(path)
    with pytest.raises(UsageError, match="refusing"):
        model_from_checkpoint(path)
    assert not marker.exists()


def test_what_a_checkpoint_holds_loads(tmp_path):
    rng = np.random.default_rng(7)
    rng.random(5)
    ck = {"recipe": {"model": {"arch": "msh", "N": 8}, "train": {"lr": 1e-4, "levels": [0.0, 1.5]}},
          "state": {"step": 3, "best": None}, "torch_rng": torch.get_rng_state(), "cuda_rng": None,
          "data_rng": rng.bit_generator.state, "opt": {"state": {0: {"exp_avg": torch.ones(2)}}}}
    torch.save(ck, tmp_path / "last.pt")
    back = load_checkpoint(tmp_path / "last.pt")
    assert back["data_rng"] == rng.bit_generator.state and back["recipe"] == ck["recipe"]
    assert torch.equal(back["torch_rng"], ck["torch_rng"])
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = back["data_rng"]
    assert rng2.random() == rng.random()
