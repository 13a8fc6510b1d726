"""The channel-conditional entropy model: starts as the hyperprior, codes one stream per slice."""
import torch
from PIL import Image

import liccodec
from liccodec.container import read_header
from liccodec.models import get_arch


def test_untrained_slices_are_exactly_the_hyperprior(tiny_builder):
    """Zero-initialised slice corrections: a charm built on msh weights is that msh model,
    which is what lets a charm training start from a shipped msh."""
    build_tiny, cfgs = tiny_builder
    msh = build_tiny(arch="msh")
    charm = get_arch("charm").build(**cfgs["charm"]).eval()
    missing, unexpected = charm.load_state_dict(msh.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("latent.cc.") for k in missing)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    level = torch.tensor([0.3, 1.7])
    with torch.no_grad():
        a, b = msh(x, level), charm(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    for k in ("y", "z"):
        assert torch.equal(a.likelihoods[k], b.likelihoods[k])


def test_one_stream_per_slice_and_the_slices_matter(tiny_models_dir, monkeypatch, photo):
    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    data = liccodec.encode(Image.fromarray(photo), model="charm.tiny", quality=2.0)
    names = set(read_header(data).streams)
    assert {"z", "y0", "y1", "y2"} <= names and "y" not in names
    # the tiny charm's slice networks are not zero, so its symbols' coding costs differ from msh's
    msh = liccodec.encode(Image.fromarray(photo), model="msh.tiny", quality=2.0)
    assert len(data) != len(msh)

