"""The channel-conditional entropy model: starts as the hyperprior, codes its slices after z in one stream."""
import itertools

import pytest
import torch
from PIL import Image

import liccodec
from liccodec.container import read_header
from liccodec.latent.channelwise import ChannelConditional
from liccodec.latent.wavelet import WaveletChannel
from liccodec.models import get_arch


def test_untrained_slices_are_exactly_the_hyperprior(tiny_builder):
    """Zero-initialised slice corrections and residual prediction: a charm built on msh
    weights is that msh model, which is what lets a charm training start from a shipped msh."""
    build_tiny, cfgs = tiny_builder
    msh = build_tiny(arch="msh")
    charm = get_arch("charm").build(**cfgs["charm"]).eval()
    missing, unexpected = charm.load_state_dict(msh.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("latent.cc.", "latent.lrp.")) for k in missing)
    assert any(k.startswith("latent.lrp.") for k in missing)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    level = torch.tensor([0.3, 1.7])
    with torch.no_grad():
        a, b = msh(x, level), charm(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    for k in ("y", "z"):
        assert torch.equal(a.likelihoods[k], b.likelihoods[k])


def test_slices_share_one_stream_and_matter(tiny_models_dir, monkeypatch, photo):
    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    data = liccodec.encode(Image.fromarray(photo), model="charm.tiny", quality=2.0)
    assert set(read_header(data).streams) <= {"ans", "esc"}
    # the tiny charm's slice networks are not zero, so its symbols' coding costs differ from msh's
    msh = liccodec.encode(Image.fromarray(photo), model="msh.tiny", quality=2.0)
    assert len(data) != len(msh)


def test_residual_prediction_moves_the_synthesis_input_not_the_bits(tiny_builder):
    """LRP adds at most half a quantization step to each decoded latent, computed from
    decoded values only: the streams are those of the same model without it."""
    build_tiny, _ = tiny_builder
    model = build_tiny(arch="charm")
    lat = model.latent
    lat.load_exact(lat.export_exact())
    with torch.no_grad():
        y = model.g_a(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2)))
    streams, y_hat = lat.compress(y, 2300)
    lrp, lat.lrp = lat.lrp, None
    try:
        plain_streams, plain = lat.compress(y, 2300)
        plain_dec = lat.decompress(streams, (2, 2), 2300)
    finally:
        lat.lrp = lrp
    assert streams == plain_streams
    assert torch.equal(plain_dec, plain)
    decoded = lat.decompress(streams, (2, 2), 2300)
    assert torch.equal(decoded, y_hat)
    _, ig = lat.gain(torch.tensor([1.3]))
    step = (decoded - plain) / ig
    assert 0 < step.abs().max() <= 0.5
    # tile by tile (2 y positions per core) gives the same up to float rounding
    assert torch.allclose(lat.decompress(streams, (2, 2), 2300, tile=4), decoded, atol=1e-5)


@pytest.mark.parametrize("kind, nets", [
    (ChannelConditional, [("cc", 18), ("gain", 2), ("hyper_gain", 2), ("lrp", 18)]),
    (WaveletChannel, [("lf", 18), ("hf", 18), ("gain", 2), ("hyper_gain", 2), ("wlrp", 36)]),
])
def test_sliced_codecs_keep_their_checkpoint_names(kind, nets):
    """Both slice codecs share ``SlicedHyperprior``'s checks; the names, order and shapes of
    their state (what checkpoints and shipped weights hold) are the ones they always had."""
    with pytest.raises(ValueError, match="M=12 does not split into 5 equal slices"):
        kind(8, 12, 3, 5, 16)
    state = kind(8, 12, 3, 3, 16, lrp=True).state_dict()
    groups = [(k, len(list(g))) for k, g in itertools.groupby(k.split(".")[0] for k in state)]
    assert groups == [("h_a", 6), ("h_s", 6), ("entropy_bottleneck", 20), *nets]
    shapes = {k: tuple(v.shape) for k, v in state.items() if k.endswith((".0.0.weight", ".2.4.weight"))}
    assert shapes == ({"cc.0.0.weight": (16, 8, 3, 3), "cc.2.4.weight": (8, 16, 3, 3),
                       "lrp.nets.0.0.weight": (16, 8, 3, 3), "lrp.nets.2.4.weight": (4, 16, 3, 3)}
                      if kind is ChannelConditional else
                      {"lf.0.0.weight": (16, 8, 3, 3), "lf.2.4.weight": (8, 16, 3, 3),
                       "hf.0.0.weight": (16, 28, 3, 3), "hf.2.4.weight": (24, 16, 3, 3),
                       "wlrp.lf.0.0.weight": (16, 8, 3, 3), "wlrp.lf.2.4.weight": (4, 16, 3, 3),
                       "wlrp.hf.0.0.weight": (16, 36, 3, 3), "wlrp.hf.2.4.weight": (12, 16, 3, 3)})
    inference = kind(8, 12, 3, 3, 16, lrp=True, inference=True).state_dict()
    assert list(inference) == [k for k in state if not k.startswith(kind.training_only)]
