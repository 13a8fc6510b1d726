"""The feedback encoder (``feedback`` configs, ``LearnedCodec.feedback``): it corrects y from
the picture g_a's y decodes to, it costs the encoder alone, and files decode with the decoder
of the same weights."""
import numpy as np
import pytest
import torch
from PIL import Image

from liccodec.errors import UsageError
from liccodec.models.registry import get_arch

CFG = dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=8, lrp=True)


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:80]
    base = np.stack([xx * 3, yy * 2, xx + yy], axis=2) % 256
    return Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))


def test_step_0_encodes_as_the_model_without_it_and_g_f_gets_gradients():
    torch.manual_seed(0)
    plain = get_arch("charm").build(**CFG)
    fb = get_arch("charm").build(**CFG, feedback=[8, 8, 8])
    fb.load_state_dict(plain.state_dict(), strict=False)
    x, level = torch.rand(2, 3, 64, 64), torch.tensor([0.5, 1.5])
    fb.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fb(x, level).x_hat, plain(x, level).x_hat, rtol=0, atol=0)
    fb.train()
    out = fb(x, level)
    ((out.x_hat - x) ** 2).mean().backward()
    assert fb.g_f[6].weight.grad.abs().sum() > 0
    assert all(m.training for m in fb.latent.modules())   # the inner eval pass left the modes alone


def test_files_decode_with_the_same_decoder(tmp_path, monkeypatch):
    from liccodec import codec
    from liccodec.train.export import export_module

    torch.manual_seed(0)
    plain = get_arch("charm").build(**CFG)
    fb = get_arch("charm").build(**CFG, feedback=[8, 8, 8])
    fb.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        fb.g_f[6].weight.normal_(0, 0.05)
    export_module(plain.eval(), "charm", CFG, "charm.plain", tmp_path)
    export_module(fb.eval(), "charm", {**CFG, "feedback": [8, 8, 8]}, "charm.fb", tmp_path)
    monkeypatch.setenv("LICCODEC_MODELS", str(tmp_path))
    img = _image()
    a, b = codec.encode(img, model="charm.plain", quality=2), codec.encode(img, model="charm.fb", quality=2)
    assert a != b   # the correction changed y
    da, db = (np.asarray(codec.decode(d).convert("RGB"), dtype=np.float64) for d in (a, b))
    assert da.shape == db.shape == (64, 80, 3)
    # the decoder is the plain one: the fb file relabelled as charm.plain's decodes the same
    import dataclasses

    from liccodec.container import pack, unpack
    from liccodec.weights import get_spec

    header, streams = unpack(b)
    spec = get_spec("charm.plain")
    relabelled = pack(dataclasses.replace(header, model_id=spec.id, digest=spec.digest, streams={}), streams)
    assert np.array_equal(np.asarray(codec.decode(relabelled).convert("RGB"), dtype=np.float64), db)
    mask = np.zeros((64, 80), dtype=np.uint8)
    mask[:, :40] = 255
    with pytest.raises(UsageError, match="one quality"):
        codec.encode(img, model="charm.fb", quality=2, roi=mask, roi_background=1)
