"""Encoder-side latent refinement (liccodec.refine): the same decoder, a better file."""
from importlib import resources

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import liccodec
from liccodec import refine
from liccodec.cli.main import main
from liccodec.codec import decode_rgb, get_spec
from liccodec.eval.classical import CodecUnavailable
from liccodec.eval.learned import parse_model
from liccodec.latent.hyperprior import _quantize_y, soft_rounding
from liccodec.weights import DEFAULT_MODEL


@pytest.mark.parametrize("hw", [(5, 7), (48, 48), (49, 100), (130, 61)])
def test_windows_cover_every_position_once_with_context(hw):
    h, w = hw
    cover = np.zeros(hw, int)
    for rows, cols, core_r, core_c in refine.windows(h, w, 4):
        assert rows.start % 4 == 0 and cols.start % 4 == 0  # the z grid of the window is the image's
        assert rows.stop - rows.start <= refine.WINDOW + 2 * refine.MARGIN + 6
        for span, core, n in ((rows, core_r, h), (cols, core_c, w)):
            a, b = span.start + core.start, span.start + core.stop  # the core, in the latent
            assert span.start <= max(0, a - refine.MARGIN) and span.stop >= min(n, b + refine.MARGIN)
        cover[rows, cols][core_r, core_c] += 1
    assert (cover == 1).all()


def test_soft_rounding_holds_only_inside_its_block():
    y = torch.tensor([[0.2, 1.7, -2.4]]).view(1, 3, 1, 1)
    means = torch.full_like(y, 0.1)
    scales = torch.ones_like(y)
    _, hard = _quantize_y(y, scales, means, training=False)
    with soft_rounding(lambda v: v * 0 + 0.25):
        _, soft = _quantize_y(y, scales, means, training=False)
    assert torch.allclose(soft, means + 0.25)
    _, again = _quantize_y(y, scales, means, training=False)
    assert torch.equal(again, hard)


def test_gumbel_annealing_is_differentiable_and_tends_to_rounding():
    v = torch.tensor([0.1, 0.3, 0.7, 1.9, -1.2, -0.6], requires_grad=True)
    g = refine.GumbelAnnealing(torch.Generator().manual_seed(0))
    g(v).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    g.tau = 1e-3
    assert torch.equal(g(v.detach()), torch.round(v.detach()))


def test_refined_files_decode_for_every_architecture(tiny_each, photo):
    """Refinement only changes what the encoder codes: every architecture's file decodes."""
    data = liccodec.encode(Image.fromarray(photo), model=tiny_each, quality=2, refine=2)
    _, rgb, _ = decode_rgb(data)
    assert rgb.shape == photo.shape


def test_refinement_is_repeatable_and_windowed_refinement_runs(tiny, photo, monkeypatch):
    first = liccodec.encode(Image.fromarray(photo), model=tiny, quality=2, refine=3)
    assert liccodec.encode(Image.fromarray(photo), model=tiny, quality=2, refine=3) == first
    monkeypatch.setattr(refine, "WINDOW", 2)  # the tiny model's 70x99 photo: several windows
    monkeypatch.setattr(refine, "MARGIN", 1)
    seen = []
    from liccodec.codec import encode_planes
    from liccodec.imageio import split

    enc = encode_planes(split(Image.fromarray(photo)), tiny, 2, refine=3,
                        progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] > 3  # several windows, 3 steps each
    assert decode_rgb(enc.data)[1].shape == photo.shape


def _crop() -> np.ndarray:
    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        return np.asarray(Image.open(p).convert("RGB"))[60:188, 150:278]


def test_refinement_lowers_the_real_rate_distortion_cost_of_the_default():
    """The shipped default, a 128x128 photo: the refined file costs less in bpp + lambda *
    255^2 * MSE (the training objective, measured on real files) than the plain one."""
    img = _crop()
    spec = get_spec(DEFAULT_MODEL)
    lam = spec.config["lambdas"][2]  # quality 3 is trained level 2

    def cost(data: bytes) -> float:
        _, rgb, _ = decode_rgb(data)
        mse = np.mean((rgb.astype(float) - img.astype(float)) ** 2) / 255.0**2
        return 8 * len(data) / img[..., 0].size + lam * 255.0**2 * mse

    plain = liccodec.encode(Image.fromarray(img), model=spec.id, quality=3)
    refined = liccodec.encode(Image.fromarray(img), model=spec.id, quality=3, refine=20)
    assert cost(refined) < cost(plain)


def test_eval_names_a_refined_model():
    assert parse_model("charm.mse") == ("charm.mse", 0)
    assert parse_model("charm.mse+refine50") == ("charm.mse", 50)
    with pytest.raises(CodecUnavailable):
        parse_model("charm.mse+refine")


@pytest.mark.parametrize("extra", [["--target-size", "5k"], ["--roi", "MASK"]])
def test_cli_refuses_refinement_with_rate_targets_and_regions(tiny, photo, tmp_path, extra):
    src = tmp_path / "a.png"
    Image.fromarray(photo).save(src)
    Image.fromarray(np.zeros(photo.shape[:2], np.uint8)).save(tmp_path / "m.png")
    extra = [str(tmp_path / "m.png") if a == "MASK" else a for a in extra]
    res = CliRunner().invoke(main, ["encode", str(src), str(tmp_path / "a.lic"), "--refine", "2", *extra])
    assert res.exit_code == 2 and "--refine" in res.output
    assert not (tmp_path / "a.lic").exists()


def test_cli_refines_an_image_and_a_folder(tiny, photo, tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(photo).save(tmp_path / "in" / "a.png")
    res = CliRunner().invoke(main, ["encode", str(tmp_path / "in" / "a.png"), str(tmp_path / "a.lic"),
                                    "-m", tiny, "-q", "2", "--refine", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                    "-m", tiny, "-q", "2", "--refine", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "a.lic").read_bytes() == (tmp_path / "a.lic").read_bytes()
