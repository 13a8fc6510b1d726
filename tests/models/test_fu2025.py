"""selic (charm + caption FiLM, after SELIC, Fu et al. 2025): the fixed caption embedding, the
zero start (exactly charm with or without a caption), that a trained block does condition on
the caption per image, tiled decoding, the warm start from charm, and the file round trip.
The architecture contract (tests/models/test_contract.py) covers it through the registry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from liccodec.models import get_arch
from liccodec.nn.semantic import CaptionFiLM, caption_embedding, caption_features
from liccodec.tiling import TilePolicy

from charm_zoo import image


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    a = get_arch("selic")
    return a.build(**a.tiny).eval()


def _wake(model) -> None:
    with torch.no_grad():
        for m in model.films:
            m.mlp[2].weight.normal_(0, 0.3)
            m.mlp[2].bias.normal_(0, 0.1)


def test_the_embedding_is_fixed_and_means_words():
    e = caption_embedding("A red barn under a stormy sky")
    assert e.dtype == np.float32 and e.shape == (512,) and abs(float(np.linalg.norm(e)) - 1) < 1e-6
    # golden: the hash is part of the model (a trained MLP reads these coordinates)
    assert np.flatnonzero(caption_embedding("barn", 64)).tolist() == [7, 19, 28, 47, 61]
    assert np.array_equal(caption_embedding("RED  barn!"), caption_embedding("red barn"))
    assert not caption_embedding(None).any() and not caption_embedding("the of a").any()
    near = float(caption_embedding("a red barn by a pond") @ caption_embedding("red barns near the pond"))
    far = float(caption_embedding("a red barn by a pond") @ caption_embedding("two parrots on a branch"))
    assert near > 0.4 > 0.15 > far
    assert [f for f, _ in caption_features("sky")] == ["w:sky", "t:<sk", "t:sky", "t:ky>"]


def test_untrained_it_is_charm_with_and_without_a_caption():
    model = _tiny()
    charm = get_arch("charm").build(**{k: v for k, v in get_arch("selic").tiny.items()
                                       if k not in ("embed_dim", "film_hidden")}).eval()
    missing, unexpected = charm.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(".film" in k for k in unexpected)
    x, level = image(), torch.tensor([1.3])
    with torch.no_grad():
        torch.manual_seed(5)
        ref = charm(x, level).x_hat
        for caps in (None, ["a red barn"], [None]):
            torch.manual_seed(5)
            assert torch.equal(model(x, level, captions=caps).x_hat, ref), caps


def test_a_trained_block_conditions_each_image_on_its_own_caption():
    model = _tiny()
    _wake(model)
    x = image().repeat(3, 1, 1, 1)
    level = torch.tensor([1.0, 1.0, 1.0])
    with torch.no_grad():
        torch.manual_seed(0)
        out = model(x, level, captions=["a red barn", None, "two parrots"]).x_hat
        torch.manual_seed(0)
        plain = model(x, level).x_hat
    # the noise of training quantization differs per image, so compare each with its own plain run
    assert torch.equal(out[1], plain[1])
    assert (out[0] - plain[0]).abs().max() > 1e-3 and (out[2] - plain[2]).abs().max() > 1e-3
    assert (out[0] - out[2]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="2 caption embeddings for a batch of 3"):
        model(x, level, captions=["a", "b"])


def test_only_the_film_blocks_learn_from_a_caption():
    model = _tiny().train()
    for n, p in model.named_parameters():
        p.requires_grad_(".film" in n)
    x = image()
    out = model(x, torch.tensor([1.0]), captions=["a noisy square"])
    (out.x_hat - x).pow(2).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if ".film" in n}
    assert grads and all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.endswith("mlp.2.weight"))


def test_tiled_decoding_with_a_caption_equals_whole(tmp_path):
    from safetensors.torch import load_file

    from liccodec.train.export import export_module

    model = _tiny()
    _wake(model)
    path = export_module(model, "selic", dict(get_arch("selic").tiny), "selic.tiny", tmp_path)
    net = get_arch("selic").build(inference=True, **get_arch("selic").tiny)
    net.load_tensors(load_file(str(path)))
    net.eval()
    x = image(128, 128, seed=4)
    streams = net.compress(x, 2000, tiles=TilePolicy.never())
    small = TilePolicy(threshold=0, tile=64)
    whole = net.decompress(streams, x.shape[2:], 2000, tiles=TilePolicy.never(), caption="grey noise")
    tiled = net.decompress(streams, x.shape[2:], 2000, tiles=small, caption="grey noise")
    plain = net.decompress(streams, x.shape[2:], 2000, tiles=TilePolicy.never())
    assert (tiled - whole).abs().max() < 1e-4 and (whole - plain).abs().max() > 1e-3
    assert all(m.embedding is None for m in net.films)  # nothing left behind


def test_film_is_pointwise_for_tiling():
    from liccodec.tiling import Geometry

    assert CaptionFiLM(4, 8, 4).axis_ops() == []
    assert Geometry.of(_tiny().g_s) == Geometry.of(get_arch("charm").build(**{
        k: v for k, v in get_arch("selic").tiny.items() if k not in ("embed_dim", "film_hidden")}).g_s)


def test_a_file_decodes_with_its_caption(tiny_models_dir, monkeypatch, photo):
    """Through liccodec.encode/decode: the caption travels in the file and reaches g_s (the
    tiny selic's blocks are zero, so the picture is charm's; the stream is what matters)."""
    from PIL import Image

    import liccodec
    from liccodec.codec import decode_rgb, with_caption

    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    data = liccodec.encode(Image.fromarray(photo), model="selic.tiny", quality=2, caption="a gradient")
    seen = []
    real = CaptionFiLM.forward

    def spy(self, h):
        seen.append(None if self.embedding is None else self.embedding.clone())
        return real(self, h)

    monkeypatch.setattr(CaptionFiLM, "forward", spy)
    rgb = decode_rgb(data)[1]
    assert seen and all(e is not None and torch.allclose(e[0], torch.from_numpy(caption_embedding("a gradient", 32)))
                        for e in seen)
    seen.clear()
    assert np.array_equal(decode_rgb(with_caption(data, None))[1], rgb) and all(e is None for e in seen)
