"""Loading shipped weights: the bytes that are verified are the bytes that are parsed."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from liccodec.errors import ModelError
from liccodec.weights import get_spec, read_tensors, safetensors_arrays


def test_tensors_read_from_the_verified_bytes_equal_safetensors_own(tiny):
    spec = get_spec(tiny)
    arrays, tensors = read_tensors(spec, "np"), read_tensors(spec, "pt")
    with safe_open(str(spec.path), "np") as f:
        assert sorted(arrays) == sorted(tensors) == sorted(f.keys())
        for k in f.keys():
            ref = f.get_tensor(k)
            assert arrays[k].dtype == ref.dtype and np.array_equal(arrays[k], ref)
            assert np.array_equal(tensors[k].numpy(), ref)
    # numpy gets read-only views into the verified bytes, torch its own writable copies
    assert not any(a.flags.writeable for a in arrays.values())
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert set(read_tensors(spec, "np", ("g_s.",))) == {k for k in arrays if k.startswith("g_s.")}


def test_a_changed_weights_file_is_refused(tiny, tiny_models_dir, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    monkeypatch.setenv("LICCODEC_MODELS", str(models))
    spec = get_spec(tiny)
    data = bytearray(spec.path.read_bytes())
    data[-1] ^= 1
    spec.path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        read_tensors(spec, "np")


@pytest.mark.parametrize("data", [b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}",
                                  b"\x37\x00\x00\x00\x00\x00\x00\x00"
                                  b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'])
def test_bytes_that_are_not_safetensors_are_a_model_error(data):
    with pytest.raises(ModelError, match="not a safetensors file"):
        safetensors_arrays(data, "x.safetensors")
