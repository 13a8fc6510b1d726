"""Shipping a model as what differs from another shipped model (``lic export --base``): of the
same architecture, of one it extends (icisp over charm), or over a base that has a base; and
the loaders (torch, numpy, warm start) assembling the same tensors as the whole export."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import liccodec
from liccodec import runtime, weights
from liccodec.container import unpack
from liccodec.errors import ModelError
from liccodec.models import get_arch
from liccodec.train.export import export_module
from liccodec.train.warmstart import _shipped_tensors, warm_start

#: architectures that extend charm with named blocks (the zoo) and fit a charm base
EXTENDED = ("icisp", "podkic")


@pytest.fixture()
def models(tiny_builder, tmp_path, monkeypatch):
    """A models folder holding a tiny plain ``charm.tiny``, and the lookups pointed at it."""
    build_tiny, cfgs = tiny_builder
    out = tmp_path / "models"
    export_module(build_tiny(arch="charm"), "charm", cfgs["charm"], "charm.tiny", out)
    monkeypatch.setenv("LICCODEC_MODELS", str(out))
    weights._load.cache_clear()
    runtime._load.cache_clear()
    yield out
    weights._load.cache_clear()
    runtime._load.cache_clear()


@torch.no_grad()
def tuned(arch: str, init, prefixes: tuple[str, ...] = ("g_s.",), seed: int = 3):
    """A tiny ``arch`` warm-started from ``init`` whose parameters under ``prefixes``, and those
    the warm start left fresh (the new blocks), are changed as a fine-tune would change them."""
    torch.manual_seed(seed)
    model = get_arch(arch).build(**get_arch(arch).tiny)
    fresh = set(warm_start(model, init))
    for name, p in model.named_parameters():
        if name.startswith(prefixes) or name in fresh:
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def export_twins(model, arch: str, tag: str, out, base: str):
    """``model`` exported over ``base`` as ``<arch>.<tag>`` and whole as ``<arch>.<tag>full``."""
    cfg = get_arch(arch).tiny
    return (export_module(model, arch, cfg, f"{arch}.{tag}", out, base=base),
            export_module(model, arch, cfg, f"{arch}.{tag}full", out))


def assert_same_model(delta_id: str, full_id: str, photo) -> None:
    """Both loaders see the same tensors for the two ids, the torch model loads exactly that
    set, and both code a photo into the same latents and decode it to the same pixels."""
    delta, full = weights.get_spec(delta_id), weights.get_spec(full_id)
    for framework in ("pt", "np"):
        a, b = weights.read_tensors(delta, framework), weights.read_tensors(full, framework)
        assert sorted(a) == sorted(b)
        for k in a:
            assert a[k].dtype == b[k].dtype and (a[k] == b[k]).all(), (framework, k)
    model = weights.load_model(delta_id)
    assert sorted(model.export_tensors()) == sorted(a)
    coded = [liccodec.encode(Image.fromarray(photo), model=m, quality=2.5) for m in (delta_id, full_id)]
    (ha, sa), (hb, sb) = (unpack(c) for c in coded)
    assert sa == sb and (ha.model_id, hb.model_id) == (delta_id, full_id)
    assert ha.digest == delta.digest
    da, db = (np.asarray(liccodec.decode(c)) for c in coded)
    assert np.array_equal(da, db)


@pytest.mark.parametrize("arch", EXTENDED)
def test_an_architecture_that_extends_charm_ships_over_a_charm_model(models, arch, photo):
    base = models / "charm.tiny.safetensors"
    model = tuned(arch, base)
    delta, full = export_twins(model, arch, "gan", models, base="charm.tiny")
    own, base_tensors = load_file(delta), load_file(base)
    # g_s changed and the blocks are new; g_a's layers and the whole entropy model are the base's
    assert own and all(k.startswith("g_s.") or k not in base_tensors for k in own)
    assert not any(k.startswith(("latent.", "exact.")) for k in own)
    assert delta.stat().st_size < full.stat().st_size / 5
    entry = json.loads((models / "manifest.json").read_text())["models"][f"{arch}.gan"]
    assert (entry["base"], entry["base_sha256"]) == ("charm.tiny", weights.sha256_file(base))
    assert_same_model(f"{arch}.gan", f"{arch}.ganfull", photo)


def test_a_model_of_the_same_architecture_still_ships_over_its_base(models, photo):
    """charm.gan's case: only g_s differs; charm runs in the numpy decoder and encoder."""
    delta, _ = export_twins(tuned("charm", models / "charm.tiny.safetensors"), "charm", "gan", models,
                            base="charm.tiny")
    own = load_file(delta)
    assert own and all(k.startswith("g_s.") for k in own)
    assert_same_model("charm.gan", "charm.ganfull", photo)


def test_a_base_may_have_a_base(models, photo):
    """icisp over charm.gan over charm.tiny: the blocks alone in icisp's file; a warm start
    from charm.gan (a file holding g_s alone) gets all of it."""
    export_twins(tuned("charm", models / "charm.tiny.safetensors"), "charm", "gan", models, base="charm.tiny")
    model = tuned("icisp", models / "charm.gan.safetensors", prefixes=())
    delta, _ = export_twins(model, "icisp", "gan", models, base="charm.gan")
    assert all(".evss" in k or ".fdm" in k for k in load_file(delta))
    assert [s.id for s in weights.base_chain(weights.get_spec("icisp.gan"))] == \
        ["icisp.gan", "charm.gan", "charm.tiny"]
    assert_same_model("icisp.gan", "icisp.ganfull", photo)
    charm = get_arch("charm").build(**get_arch("charm").tiny)
    with pytest.raises(ValueError, match="cycle: charm.tiny -> icisp.gan -> charm.gan -> charm.tiny"):
        export_module(charm, "charm", get_arch("charm").tiny, "charm.tiny", models, base="icisp.gan")
    with pytest.raises(ValueError, match="cycle"):
        export_module(model, "icisp", get_arch("icisp").tiny, "icisp.gan", models, base="icisp.gan")


def test_warm_start_from_a_delta_is_the_warm_start_from_the_whole(models, tmp_path):
    delta, full = export_twins(tuned("icisp", models / "charm.tiny.safetensors"), "icisp", "gan", models,
                               base="charm.tiny")
    a, b = _shipped_tensors(delta), load_file(full)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    states = []
    for path in (delta, full):
        m = get_arch("icisp").build(**get_arch("icisp").tiny)
        warm_start(m, path)
        states.append(m.state_dict())
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    # away from its manifest, a delta would warm-start part of the model: refused
    alone = tmp_path / "alone" / delta.name
    alone.parent.mkdir()
    shutil.copy(delta, alone)
    with pytest.raises(ModelError, match="charm.tiny"):
        _shipped_tensors(alone)
    assert sorted(_shipped_tensors(full)) == sorted(b)


def test_a_base_that_does_not_fit_is_refused_by_name_and_a_wider_tensor_is_stored_whole(models, tiny_builder):
    build_tiny, cfgs = tiny_builder
    cfg = get_arch("icisp").tiny
    icisp = tuned("icisp", models / "charm.tiny.safetensors")
    # another width: the tensors whose shapes differ are stored whole, and load over the base's
    wide = {**cfgs["charm"], "M": 15}
    export_module(get_arch("charm").build(**wide), "charm", wide, "charm.wide", models)
    delta = load_file(export_module(icisp, "icisp", cfg, "icisp.wide", models, base="charm.wide"))
    assert tuple(delta["exact.cc.0.0.weight"].shape) == (16, 8, 3, 3)
    own, assembled = icisp.export_tensors(), weights.read_tensors(weights.read_manifest(models)["icisp.wide"])
    assert assembled.keys() == own.keys() and all(torch.equal(assembled[k], own[k]) for k in own)
    # a base with tensors this model does not have: the blocks of icisp under charm
    export_module(icisp, "icisp", cfg, "icisp.full", models)
    with pytest.raises(ValueError, match=r"its tensor 'g_a\.evss8\.[^']*' is not one this model exports"):
        export_module(build_tiny(arch="charm"), "charm", cfgs["charm"], "charm.x", models, base="icisp.full")
    # weconv's wavelet-domain entropy model is not charm's
    weconv = get_arch("weconv").build(**get_arch("weconv").tiny)
    with pytest.raises(ValueError, match="'exact.cc.0.0.bias' is not one this model exports"):
        export_module(weconv, "weconv", get_arch("weconv").tiny, "weconv.x", models, base="charm.tiny")
    # the same tensor in another dtype
    real = icisp.export_tensors
    icisp.export_tensors = lambda: {k: (v.double() if k == "g_a.0.bias" else v) for k, v in real().items()}
    with pytest.raises(ValueError, match=r"'g_a\.0\.bias' is \(8,\) torch.float16, this model's \(8,\) "
                                         r"torch.float64"):
        export_module(icisp, "icisp", cfg, "icisp.x", models, base="charm.tiny")
    with pytest.raises(ValueError, match="not in"):
        export_module(icisp, "icisp", cfg, "icisp.x", models, base="charm.nowhere")
    assert "icisp.x" not in weights.read_manifest(models)


def test_a_delta_without_its_base_is_a_model_error(models, photo):
    base = models / "charm.tiny.safetensors"
    export_twins(tuned("icisp", base), "icisp", "gan", models, base="charm.tiny")
    manifest = models / "manifest.json"
    entries = json.loads(manifest.read_text())

    def load(change, model_id: str = "icisp.gan") -> None:
        m = json.loads(json.dumps(entries))
        change(m["models"])
        manifest.write_text(json.dumps(m))
        weights._load.cache_clear()
        weights.load_model(model_id)

    # the strict load: icisp's delta over charm read as a charm model has tensors charm lacks
    with pytest.raises(ModelError, match="charm.bad: weights do not fit the architecture: .*unexpected"):
        load(lambda m: m.update({"charm.bad": {**m["icisp.gan"], "arch": "charm",
                                               "config": m["charm.tiny"]["config"]}}), "charm.bad")
    with pytest.raises(ModelError, match="built on 'charm.tiny', which the manifest does not list"):
        load(lambda m: m.pop("charm.tiny"))
    with pytest.raises(ModelError, match="cycle: icisp.gan -> charm.tiny -> icisp.gan"):
        load(lambda m: m["charm.tiny"].update(base="icisp.gan"))
    # the base re-exported since: its sha256 is not the one the delta was made over
    with pytest.raises(ModelError, match="export icisp.gan again over the new charm.tiny"):
        load(lambda m: m["charm.tiny"].update(sha256="0" * 64))
    manifest.write_text(json.dumps(entries))
    assert weights.get_spec("icisp.gan").available
    data = bytearray(base.read_bytes())
    data[-1] ^= 1
    base.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="icisp.gan is built on charm.tiny: weights .* have sha256"):
        load(lambda m: None)
    base.unlink()
    assert not weights.get_spec("icisp.gan").available
    with pytest.raises(ModelError, match="icisp.gan is built on charm.tiny: weights file for charm.tiny not found"):
        load(lambda m: None)
    with pytest.raises(ModelError):
        liccodec.encode(Image.fromarray(photo), model="icisp.gan", quality=2)


def test_int16_weights_ship_over_a_base_written_with_int32(models, photo):
    """Exports write integer weights as int16 since session 20; a base shipped before that
    holds them as int32. A model over such a base stores none of the unchanged ones."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    base = models / "charm.tiny.safetensors"
    with safe_open(str(base), "pt") as f:
        meta = f.metadata()
    old = {k: (v.to(torch.int32) if v.dtype == torch.int16 else v) for k, v in load_file(base).items()}
    assert any(k.startswith("exact.") and k.endswith(".weight") and v.dtype == torch.int32 for k, v in old.items())
    save_file(old, str(base), metadata=meta)
    manifest = json.loads((models / "manifest.json").read_text())
    manifest["models"]["charm.tiny"]["sha256"] = weights.sha256_file(base)
    (models / "manifest.json").write_text(json.dumps(manifest))
    weights._load.cache_clear()
    runtime._load.cache_clear()
    delta, full = export_twins(tuned("charm", base), "charm", "gan", models, base="charm.tiny")
    assert all(k.startswith("g_s.") for k in load_file(delta))
    assert all(v.dtype == torch.int16 for k, v in load_file(full).items() if k.startswith("exact.") and k.endswith(".weight"))
    coded = [liccodec.encode(Image.fromarray(photo), model=m, quality=2.5) for m in ("charm.gan", "charm.ganfull")]
    assert unpack(coded[0])[1] == unpack(coded[1])[1]
    assert np.array_equal(*(np.asarray(liccodec.decode(c)) for c in coded))
