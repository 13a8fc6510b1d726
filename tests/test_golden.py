"""Golden files: the shipped weights must keep decoding (and, on the same machine, writing)
the exact bytes they wrote when these files were made.

``tests/golden/`` holds small .lic files of two crops of the bundled photo, coded with each
shipped model at two qualities (and with charm.mse below its lowest level and above its top,
``BEYOND``), and ``golden.json`` with the sha256 of each file and of its decoded latent
integers (y symbols and the fixed-point means that decide the coder's parameters; for a file
with a residual layer also the layer's integers). Files that the current encoder no longer
writes (``legacy`` in the JSON: a 4.0 file, and a 2.0 file of charm.mse at a quality that is
now coded with the layer) are kept to check that they still decode to the same integers. Pixels are not recorded: the float synthesis may differ by an ulp across
machines and precisions; the latents may not.

Decoding is integer arithmetic, so its check holds on every machine. Encoding runs the float
analysis (g_a, h_a) before rounding, so on another CPU or torch build a symbol that sits
within an ulp of a rounding boundary may land on its other side: the torch models' fp32
re-encode, which wrote the files, is compared byte for byte where the environment equals
the one that wrote them (``env`` in the JSON), and elsewhere only to within a few symbols.
``lic encode`` runs the numpy encoder (``liccodec.runtime.encoder``, fp32 through numpy's
BLAS) for msh and charm models; it wrote all twelve of their files byte for byte on the
machine that made them, but its rounding depends on the BLAS, not on ``env``, so it is held to
a few symbols.

Regenerate (only when a format or weights change is intended):
``LICCODEC_PRECISION=fp32 python tests/test_golden.py``. In the environment that wrote the
record, it writes only the files of new models and of models whose weights changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liccodec.container import RESIDUAL_STREAM

GOLDEN = Path(__file__).resolve().parent / "golden"
# (name, rows, cols) of the bundled photo (451x300): 128x96 and 64x64 pixels
CROPS = {"chelsea-128x96": (slice(40, 136), slice(120, 248)),
         "chelsea-64x64": (slice(150, 214), slice(300, 364))}
QUALITIES = (2.0, 6.35)   # a trained level and an interpolated one
#: (model, quality, crop) beyond the trained levels (session 29): an extrapolated quality below
#: the lowest (a 2.0 file) and one above the top, with a residual layer (a 5.0 file, over
#: quality 7)
BEYOND = (("charm.mse", 0.5, "chelsea-128x96"), ("charm.mse", 10.0, "chelsea-128x96"))


def _crop(name: str) -> np.ndarray:
    with resources.as_file(resources.files("liccodec") / "data" / "chelsea.png") as p:
        rgb = np.asarray(Image.open(p).convert("RGB"))
    rows, cols = CROPS[name]
    return np.ascontiguousarray(rgb[rows, cols])


def _environment() -> str:
    return f"{platform.machine()} {torch.__version__} {torch.backends.cpu.get_cpu_capability()}"


def _latents(data: bytes, tile: int | None = None, numpy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The decoded integers: (y symbols, means in fixed point); ``tile`` in y positions;
    ``numpy``: by the numpy decoder (``liccodec.runtime``) instead of the torch model."""
    from liccodec import runtime
    from liccodec.codec import _spec_for
    from liccodec.container import unpack
    from liccodec.entropy import reader_of
    from liccodec.weights import load_model

    header, streams = unpack(data)
    spec = _spec_for(header)
    net = runtime.load_decoder(spec.id) if numpy else load_model(spec.id)
    ds = net.downsampling
    z_hw = (-(-header.height // ds), -(-header.width // ds))
    q = _layered(data)[0] if RESIDUAL_STREAM in streams else header.quality
    if not numpy:
        return tuple(t.numpy() for t in net.latent.decode_latents(streams, z_hw, q, tile))
    reader = reader_of(streams)
    out = net.decode_latents(reader, z_hw, q, tile)
    reader.finish()
    return out


def _latent_hash(data: bytes, tile: int | None = None, numpy: bool = False) -> str:
    h = hashlib.sha256()
    for t in _latents(data, tile, numpy):
        h.update(np.ascontiguousarray(t, dtype="<i8").tobytes())
    return h.hexdigest()


def _layered(data: bytes) -> tuple[int, bytes]:
    """(the latents' quality, the residual stream) of a file with a residual layer."""
    from liccodec.codec import _spec_for, residual_base
    from liccodec.container import unpack

    header, streams = unpack(data)
    return residual_base(_spec_for(header), header, streams[RESIDUAL_STREAM])


def _residual_hash(data: bytes) -> str | None:
    """sha256 of the residual-layer integers of a file with one (None for other files)."""
    from liccodec import residual
    from liccodec.container import unpack

    header, streams = unpack(data)
    if RESIDUAL_STREAM not in streams:
        return None
    bands, step, bias = residual.decode_integers(_layered(data)[1], header.height, header.width)
    h = hashlib.sha256(f"{step} {bias}".encode())
    for q in bands:
        h.update(np.ascontiguousarray(q, dtype="<i8").tobytes())
    return h.hexdigest()


def _cases() -> list[tuple[str, str, float, str]]:
    """(file name, model, quality, crop) of every golden file."""
    from liccodec.codec import list_models

    return ([(f"{m.id}-{c}-q{q:g}.lic", m.id, q, c)
             for m in sorted(list_models(), key=lambda s: s.id) for c in CROPS for q in QUALITIES]
            + [(f"{m}-{c}-q{q:g}.lic", m, q, c) for m, q, c in BEYOND])


def _record() -> dict:
    path = GOLDEN / "golden.json"
    return json.loads(path.read_text()) if path.is_file() else {"env": "", "files": {}}


def _encode(model: str, q: float, crop: str, reference: bool = True) -> bytes:
    """The file ``liccodec.encode`` writes, by the torch models (``reference``) or by the
    encoder it runs itself (numpy for the shipped architectures)."""
    from contextlib import nullcontext
    from unittest import mock

    import liccodec
    from liccodec import codec
    from liccodec.weights import load_model

    torch_models = mock.patch.object(codec, "_encoder", lambda spec: load_model(spec.id))
    with torch_models if reference else nullcontext():
        return liccodec.encode(Image.fromarray(_crop(crop)), model=model, quality=q)


def regenerate() -> None:
    from liccodec.weights import get_spec

    if os.environ.get("LICCODEC_PRECISION") != "fp32":
        raise SystemExit("set LICCODEC_PRECISION=fp32")
    GOLDEN.mkdir(exist_ok=True)
    old = _record()
    # in the environment that wrote them, the files of unchanged weights are kept as they are
    kept = old["files"] if old["env"] == _environment() else {}
    files = {name: e for name, e in old["files"].items() if e.get("legacy")}
    for name, model, q, crop in _cases():
        if name in kept and kept[name]["weights_sha256"] == get_spec(model).sha256:
            files[name] = kept[name]
            continue
        data = _encode(model, q, crop)
        (GOLDEN / name).write_bytes(data)
        files[name] = {"model": model, "weights_sha256": get_spec(model).sha256, "quality": q, "crop": crop,
                       "sha256": hashlib.sha256(data).hexdigest(), "latents_sha256": _latent_hash(data)}
        if _residual_hash(data):
            files[name]["residual_sha256"] = _residual_hash(data)
    rec = {"env": _environment(), "files": dict(sorted(files.items()))}
    (GOLDEN / "golden.json").write_text(json.dumps(rec, indent=1) + "\n")


def _same_weights(entry: dict) -> None:
    from liccodec.weights import get_spec

    shipped = get_spec(entry["model"]).sha256
    assert shipped == entry["weights_sha256"], (
        f"{entry['model']} has new weights: regenerate the golden files (module doc) in the same commit")


GOLDEN_CASES = [pytest.param(name, id=name) for name in sorted(_record()["files"])]
#: the files the current encoder writes (not the legacy ones)
ENCODED_CASES = [pytest.param(name, id=name) for name, e in sorted(_record()["files"].items()) if not e.get("legacy")]


def test_every_shipped_model_has_golden_files():
    assert {c[0] for c in _cases()} <= set(_record()["files"])


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_file_decodes_to_its_latents(name):
    entry = _record()["files"][name]
    _same_weights(entry)
    data = (GOLDEN / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert _latent_hash(data) == entry["latents_sha256"]
    assert _latent_hash(data, tile=4) == entry["latents_sha256"]  # tiled decoding: same integers
    assert _residual_hash(data) == entry.get("residual_sha256")
    # the numpy decoder that lic decode runs (for its architectures; the zoo's decode in torch):
    # the same integers, whole and tiled
    from liccodec import runtime
    from liccodec.weights import get_spec

    if get_spec(entry["model"]).arch not in runtime.SUPPORTED:
        return
    assert _latent_hash(data, numpy=True) == entry["latents_sha256"]
    assert _latent_hash(data, tile=4, numpy=True) == entry["latents_sha256"]


@pytest.mark.parametrize("name", ENCODED_CASES)
def test_golden_file_is_what_fp32_encoding_writes(name, monkeypatch):
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    rec = _record()
    entry = rec["files"][name]
    _same_weights(entry)
    data = _encode(entry["model"], entry["quality"], entry["crop"])
    if rec["env"] == _environment():
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        return
    # another machine: float analysis may flip a symbol at a rounding boundary (module doc)
    _nearly_the_same(name, data)


@pytest.mark.parametrize("name", ENCODED_CASES)
def test_golden_file_is_nearly_what_lic_encode_writes(name, monkeypatch):
    monkeypatch.setenv("LICCODEC_PRECISION", "fp32")
    entry = _record()["files"][name]
    _same_weights(entry)
    _nearly_the_same(name, _encode(entry["model"], entry["quality"], entry["crop"], reference=False))


def _nearly_the_same(name: str, data: bytes) -> None:
    gold = _latents((GOLDEN / name).read_bytes())[0]
    ours = _latents(data)[0]
    assert ours.shape == gold.shape and (ours != gold).mean() < 1e-3


if __name__ == "__main__":
    regenerate()
    sys.exit(0)
