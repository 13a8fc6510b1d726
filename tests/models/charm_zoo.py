"""What the tests of the architectures that extend charm with named blocks share (icisp,
podkic, selic, weconv): the shipped charm.mse, a test image, and the checks that such a
model is charm plus its blocks, and starts as the charm it was warm-started from. The
fixture ``charm_file`` (a tiny exported charm) is in this folder's conftest."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from liccodec.models import get_arch

REPO = Path(__file__).resolve().parents[2]
CHARM_MSE = REPO / "models" / "charm.mse.safetensors"
needs_charm_mse = pytest.mark.skipif(not CHARM_MSE.exists(), reason="models/charm.mse.safetensors not present")
#: what a warm start from charm may leave fresh besides the blocks: the z prior's table
#: buffers, which training does not use
Z_PRIOR = "latent.entropy_bottleneck."


def image(h: int = 64, w: int = 64, seed: int = 1) -> torch.Tensor:
    """A (1, 3, h, w) uniform random image, the same for the same seed."""
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def assert_charm_plus(model, charm_cfg: dict, blocks: tuple[str, ...]) -> None:
    """``model``'s state is that of the charm of ``charm_cfg``, name for name and shape for
    shape, plus some entries, all under the prefixes ``blocks``."""
    charm, own = shapes(get_arch("charm").build(**charm_cfg)), shapes(model)
    extra = set(own) - set(charm)
    assert extra and all(k.startswith(blocks) for k in extra), sorted(extra)
    assert {k: v for k, v in own.items() if k in charm} == charm


def warm(arch: str, path, **cfg):
    """A training build of ``arch`` (``cfg``, or else its tiny config) warm-started from the
    weights at ``path``, and the state names the warm start left fresh."""
    from liccodec.train.warmstart import warm_start

    model = get_arch(arch).build(**(cfg or get_arch(arch).tiny))
    return model, warm_start(model, path)


def recipe_config(recipe: str, arch: str):
    """The model config of the recipe ``docs/<recipe>``, checked to be an ``arch`` that starts
    from charm.mse with charm.mse's config (N, M, slices, hidden, lrp) and, where that file
    is here, its lambdas."""
    from liccodec.train.config import Recipe
    from liccodec.train.warmstart import source_lambdas

    r = Recipe.load(REPO / "docs" / recipe)
    assert r.arch == arch and r.train.init == "models/charm.mse.safetensors"
    cfg = get_arch(arch).config(**r.model)
    assert (cfg.N, cfg.M, cfg.slices, cfg.hidden, cfg.lrp) == (128, 192, 6, 64, True)
    if not CHARM_MSE.exists():
        pytest.skip(f"{CHARM_MSE} not present")
    assert list(cfg.lambdas) == source_lambdas(CHARM_MSE)
    return cfg


def recipe_start(recipe: str):
    """The model of the recipe ``docs/<recipe>`` and the charm of its config, both
    warm-started from charm.mse; and the state names the warm start left fresh in the model."""
    from dataclasses import fields

    from liccodec.train.config import Recipe
    from liccodec.train.warmstart import warm_start

    r = Recipe.load(REPO / "docs" / recipe)
    keep = {f.name for f in fields(get_arch("charm").config_cls)}
    charm = get_arch("charm").build(**{k: v for k, v in r.model.items() if k in keep})
    model = get_arch(r.arch).build(**r.model)
    warm_start(charm, CHARM_MSE)
    return charm, model, warm_start(model, CHARM_MSE)


def assert_starts_as(charm, model, fresh: list[str], blocks: tuple[str, ...], x: torch.Tensor,
                     level: torch.Tensor) -> None:
    """Warm-started from the same weights, ``model`` has left only its blocks (and the z
    prior's buffers) fresh and gives ``charm``'s x_hat and likelihoods bit for bit."""
    params = dict(model.named_parameters())
    assert all(k.startswith(blocks) or (k.startswith(Z_PRIOR) and k not in params) for k in fresh), fresh
    with torch.no_grad():
        a, b = charm.eval()(x, level), model.eval()(x, level)
    assert torch.equal(a.x_hat, b.x_hat)
    assert a.likelihoods.keys() == b.likelihoods.keys()
    for k in a.likelihoods:
        assert torch.equal(a.likelihoods[k], b.likelihoods[k]), k


def assert_round_trips_through_lic_without_roi(model_id: str, photo, tmp_path) -> None:
    """``lic encode`` / ``lic decode`` with the exported tiny ``model_id`` (an architecture
    with an LR latent): the decoder's latents are the encoder's, the picture is the one
    ``liccodec.decode`` gives, and region-of-interest coding is refused (the LR latent has no
    place in a map on y's grid)."""
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    import liccodec
    from liccodec.cli.main import main
    from liccodec.container import read_header
    from liccodec.errors import UsageError
    from liccodec.imageio import pad_to_multiple, to_tensor
    from liccodec.weights import load_model

    png = tmp_path / "photo.png"
    Image.fromarray(photo).save(png)
    run = lambda *a: CliRunner().invoke(main, [str(v) for v in a], catch_exceptions=False)  # noqa: E731
    r = run("encode", png, "-m", model_id, "-q", "2.5")
    assert r.exit_code == 0, r.output
    data = png.with_suffix(".lic").read_bytes()
    assert read_header(data).model_id == model_id
    r = run("decode", png.with_suffix(".lic"), "-o", tmp_path / "back.png")
    assert r.exit_code == 0, r.output
    back = np.asarray(Image.open(tmp_path / "back.png"))
    assert back.shape == photo.shape
    assert np.array_equal(back, np.asarray(liccodec.decode(data)))
    net = load_model(model_id)
    x = pad_to_multiple(to_tensor(photo), 64)
    with torch.no_grad():
        streams, y_hat = net.latent.compress(net.g_a(x), 2500)
    assert torch.equal(net.latent.decompress(streams, (2, 2), 2500), y_hat)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[10:40, 20:60] = 255
    with pytest.raises(UsageError, match="cannot vary the quality"):
        liccodec.encode(Image.fromarray(photo), model=model_id, quality=2.5, roi=mask)


def stream_steps(net, y, q) -> list[tuple[object, int]]:
    """The steps ``net``'s latent codec writes when it encodes ``y`` at quality ``q``, in
    order: (table set, number of symbols)."""
    import numpy as np

    from liccodec.entropy import StreamWriter

    writer = StreamWriter()
    seen: list[tuple[object, int]] = []
    add = writer.add

    def record(tables, symbols, index):
        seen.append((tables, int(np.asarray(symbols).size)))
        add(tables, symbols, index)

    writer.add = record
    net.latent.encode(y, q, writer)
    return seen
