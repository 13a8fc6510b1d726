"""Our coder against CompressAI's compress()/decompress() on the same (tiny) weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from liccodec.eval.reference import compare, compressai_twin


def test_twin_reproduces_our_latents(tiny, photo):
    """Folded gains: the twin's quantized y equals ours at an integer quality."""
    from liccodec.imageio import pad_to_multiple, to_tensor
    from liccodec.weights import load_model

    ours = load_model(tiny)
    twin = compressai_twin(tiny, 2)
    x = pad_to_multiple(to_tensor(photo), 64)
    with torch.no_grad():
        y_ours = ours.g_a(x) * ours.latent.gain(torch.ones(1))[0]
        y_twin = twin.g_a(x)
    assert torch.allclose(y_ours, y_twin, rtol=1e-4, atol=1e-4)


def test_compare_rows(tiny, photo):
    rows = compare(tiny, [photo, photo[:64, :80].copy()], [1, 3])
    assert [r.quality for r in rows] == [1, 3]
    for r in rows:
        d = r.to_dict()
        assert r.images == 2 and r.lic_bpp > 0 and r.cai_bpp > 0
        assert abs(r.lic_psnr - r.cai_psnr) < 0.5  # same weights, same quantization
        assert d["size_diff_pct"] == pytest.approx(r.size_diff_pct)
        assert min(r.lic_encode_s, r.lic_decode_s, r.cai_encode_s, r.cai_decode_s) > 0


def test_twin_rejects_fractional_quality(tiny):
    with pytest.raises(ValueError, match="integer"):
        compressai_twin(tiny, 1.5)
