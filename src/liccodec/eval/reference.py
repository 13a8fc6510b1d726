"""Our coding pipeline against CompressAI's own ``compress()``/``decompress()``.

Both sides run the same architecture with the same shipped weights at integer qualities:

* **liccodec**: ``liccodec.encode``/``decode`` (whole .lic file: header, CRC, integer
  hyper-synthesis, constriction rANS);
* **CompressAI**: ``compressai.models.MeanScaleHyperprior`` holding our weights, its
  ``compress()``/``decompress()`` (float hyper-synthesis, its C++ rANS coder); the
  bytes are the sum of its strings, without any container.

Our variable-rate model scales y and z by per-channel gains; at an integer quality those
are constants, so they fold into the neighbouring layers: the gain into the last layer of
g_a, the hyper gain into the last layer of h_a, and the inverse gains into the first
layers of h_s and g_s. Our h_s uses ReLU (its integer export needs it) where CompressAI's
uses LeakyReLU, so the twin's two h_s activations are swapped for ReLU; its float weights
are the integer export's, dequantised. Nothing else differs.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from liccodec.eval.metrics import psnr_rgb


@dataclass
class ReferenceRow:
    quality: int
    images: int
    lic_bpp: float            # whole .lic files
    cai_bpp: float            # CompressAI strings only
    lic_psnr: float
    cai_psnr: float
    lic_encode_s: float
    lic_decode_s: float
    cai_encode_s: float
    cai_decode_s: float

    @property
    def size_diff_pct(self) -> float:
        return 100.0 * (self.lic_bpp / self.cai_bpp - 1.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "size_diff_pct": self.size_diff_pct}


@torch.no_grad()
def compressai_twin(model_id: str, quality: int) -> nn.Module:
    """CompressAI's MeanScaleHyperprior carrying ``model_id``'s weights at ``quality``."""
    from compressai.models import MeanScaleHyperprior as CompressaiMSH
    from liccodec.nn.integer import ACT_BITS, IntegerNet
    from liccodec.weights import get_spec, load_model, read_tensors

    spec = get_spec(model_id)
    load_model(model_id)  # checks that the file is there and its sha256
    if spec.arch != "msh":
        raise ValueError(f"no CompressAI twin for architecture {spec.arch!r}")
    levels = len(spec.config["lambdas"])
    if not (1 <= quality <= levels and float(quality).is_integer()):
        raise ValueError(f"quality must be an integer in [1, {levels}] for the twin, got {quality}")
    tensors = read_tensors(spec)
    if not any(k.startswith("latent.entropy_bottleneck.") for k in tensors):
        raise ValueError(f"{model_id}'s weights predate the shipped z prior; re-export them")
    twin = CompressaiMSH(spec.config["N"], spec.config["M"])
    twin.h_s[1], twin.h_s[3] = nn.ReLU(inplace=True), nn.ReLU(inplace=True)
    state = {}
    for k, v in tensors.items():
        if k.startswith(("g_a.", "g_s.", "latent.h_a.", "latent.entropy_bottleneck.")):
            state[k.removeprefix("latent.")] = v.float()
    for i, layer in zip((0, 2, 4), IntegerNet.from_tensors(tensors, "exact.h_s").layers):
        state[f"h_s.{i}.weight"] = (layer.weight.double() / 2.0**layer.shift).float()
        state[f"h_s.{i}.bias"] = (layer.bias.double() / 2.0 ** (layer.shift + ACT_BITS)).float()

    def gain(name: str) -> torch.Tensor:
        return tensors[f"latent.{name}"][quality - 1].double().exp().float()

    g, ig = gain("gain.log_gain"), gain("gain.log_inv_gain")
    hg, ihg = gain("hyper_gain.log_gain"), gain("hyper_gain.log_inv_gain")
    last_a = f"g_a.{len(twin.g_a) - 1}"
    last_h = f"h_a.{len(twin.h_a) - 1}"
    state[f"{last_a}.weight"] = state[f"{last_a}.weight"] * g.view(-1, 1, 1, 1)
    state[f"{last_a}.bias"] = state[f"{last_a}.bias"] * g
    state[f"{last_h}.weight"] = state[f"{last_h}.weight"] * hg.view(-1, 1, 1, 1)
    state[f"{last_h}.bias"] = state[f"{last_h}.bias"] * hg
    state["h_s.0.weight"] = state["h_s.0.weight"] * ihg.view(-1, 1, 1, 1)  # (in, out, k, k)
    state["g_s.0.weight"] = state["g_s.0.weight"] * ig.view(-1, 1, 1, 1)
    # nn.Module.load_state_dict: CompressAI's override insists on its table buffers, which
    # update() below builds from the loaded prior
    missing, unexpected = nn.Module.load_state_dict(twin, state, strict=False)
    missing = [k for k in missing if not k.startswith(("entropy_bottleneck._", "gaussian_conditional."))
               and not k.endswith(("likelihood_lower_bound.bound", "target"))]
    if missing or unexpected:
        raise KeyError(f"twin does not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    twin.update(force=True)
    return twin.eval()


@torch.no_grad()
def compare(model_id: str, images: list[np.ndarray], qualities: list[int], threads: int = 1,
            progress=None) -> list[ReferenceRow]:
    """Time and size both pipelines on the same RGB uint8 images, one quality at a time."""
    from PIL import Image

    import liccodec
    from liccodec.imageio import pad_to_multiple, to_tensor

    torch.set_num_threads(threads)
    rows = []
    for q in qualities:
        twin = compressai_twin(model_id, q)
        # untimed warm-up of both sides (weights, tables, allocator)
        liccodec.decode(liccodec.encode(Image.fromarray(images[0]), model=model_id, quality=q))
        acc = {k: [] for k in ("lb", "cb", "lp", "cp", "le", "ld", "ce", "cd")}
        for rgb in images:
            h, w = rgb.shape[:2]
            pil = Image.fromarray(rgb)
            t0 = time.perf_counter()
            data = liccodec.encode(pil, model=model_id, quality=q)
            t1 = time.perf_counter()
            out = np.asarray(liccodec.decode(data))
            t2 = time.perf_counter()
            x = pad_to_multiple(to_tensor(rgb), 64)
            enc = twin.compress(x)
            t3 = time.perf_counter()
            xh = twin.decompress(enc["strings"], enc["shape"])["x_hat"][:, :, :h, :w]
            cai = (xh.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
            t4 = time.perf_counter()
            n_bytes = sum(len(s) for strings in enc["strings"] for s in strings)
            acc["lb"].append(8 * len(data) / (h * w))
            acc["cb"].append(8 * n_bytes / (h * w))
            acc["lp"].append(psnr_rgb(rgb, out))
            acc["cp"].append(psnr_rgb(rgb, cai))
            acc["le"].append(t1 - t0)
            acc["ld"].append(t2 - t1)
            acc["ce"].append(t3 - t2)
            acc["cd"].append(t4 - t3)
            if progress:
                progress(1)
        m = {k: float(np.mean(v)) for k, v in acc.items()}
        rows.append(ReferenceRow(q, len(images), m["lb"], m["cb"], m["lp"], m["cp"],
                                 m["le"], m["ld"], m["ce"], m["cd"]))
    return rows
