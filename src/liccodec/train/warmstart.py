"""Start a training run from shipped weights instead of from scratch.

Shipped weights hold what coding needs, not the full training state: the transforms (in
float16), the gain tables, and the *integer* hyper-synthesis and coding tables. A warm
start therefore

* loads every float tensor the model has (float16 is upcast),
* rebuilds the float hyper-synthesis from its integer export (``W = W_q / 2**shift``,
  ``b = b_q / 2**(shift + ACT_BITS)``; the rounding error is below 2**-15 relative),
* loads the factorized prior of z when the file carries its float parameters (exports
  since session 2 do); older files hold only its tables, so it starts fresh and
  relearns in a few hundred steps (it carries a few percent of the bits),
* maps the tables with one row per level (``model.level_tables()``: the gains; the source's
  lambdas come from the file's metadata) onto a different lambda set: a lambda the source
  has keeps its row, a new one is interpolated (or extrapolated) linearly in log-lambda per
  channel.

The optimizer starts fresh, so the recipe should warm the learning rate up again.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from liccodec.nn.integer import ACT_BITS, IntegerNet

def source_lambdas(weights: Path) -> list[float]:
    """The lambda set of shipped weights, from the config in their safetensors metadata."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise KeyError(f"{weights} carries no model config in its metadata; export it with `lic export`")
    return list(json.loads(meta["config"])["lambdas"])


def remap_levels(table: Tensor, src: list[float], dst: list[float]) -> Tensor:
    """Rows of a (levels, C) table for the lambdas ``dst``, from rows trained at ``src``."""
    ls = torch.log(torch.tensor(src, dtype=torch.float64))
    rows = []
    for lam in dst:
        x = torch.log(torch.tensor(lam, dtype=torch.float64))
        exact = torch.isclose(ls, x, rtol=0, atol=1e-9).nonzero()
        if len(exact):
            rows.append(table[int(exact[0])].double())
            continue
        i = int(torch.searchsorted(ls, x).clamp(1, len(src) - 1))  # segment [i-1, i]
        t = (x - ls[i - 1]) / (ls[i] - ls[i - 1])
        rows.append(table[i - 1].double() + t * (table[i].double() - table[i - 1].double()))
    return torch.stack(rows).to(table.dtype)


@torch.no_grad()
def warm_start(model: nn.Module, weights: str | Path, reinit: tuple[str, ...] = ()) -> list[str]:
    """Load shipped weights into a training model; returns the state names left as they were
    initialised (the z prior's table buffers always: training does not use them). Tensors
    whose names start with a ``reinit`` prefix and whose shapes differ stay fresh; any other
    shape mismatch is an error."""
    weights = Path(weights)
    tensors = _shipped_tensors(weights)
    src, dst = source_lambdas(weights), list(model.cfg.lambdas)
    state = model.state_dict()
    level_tables = set(model.level_tables())
    new = {}
    for k, v in tensors.items():
        if k.startswith("exact.") or k not in state:
            continue
        v = v.float()
        if k in level_tables and src != dst:
            v = remap_levels(v, src, dst)
        if v.shape != state[k].shape:
            if k.startswith(tuple(reinit)):
                continue
            raise ValueError(f"{k}: shipped shape {tuple(v.shape)} does not fit {tuple(state[k].shape)}")
        new[k] = v
    for name, net in model.latent.integer_nets().items():
        new.update(_float_from_integer(net, tensors, name))
    model.load_state_dict(new, strict=False)
    return sorted(k for k in state if k not in new)


def _shipped_tensors(weights: Path) -> dict[str, Tensor]:
    """The tensors of a weights file; for a model built on a base (its manifest beside it says
    so), the bases' tensors overlaid with the file's own (``liccodec.weights.read_tensors``),
    every file verified by sha256. A file that holds only what differs from a base (its
    metadata names it) but has no manifest beside it to find that base is refused: alone it
    would warm-start only part of the model."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from liccodec.errors import ModelError
    from liccodec.weights import read_manifest, read_tensors

    for spec in read_manifest(weights.parent).values():
        if spec.file == weights.name and spec.base:
            return read_tensors(spec)
    with safe_open(str(weights), "pt") as f:
        base = (f.metadata() or {}).get("base")
    if base:
        raise ModelError(f"{weights} holds only what differs from {base!r}, and no manifest.json beside it "
                         "lists it with that base; warm-start from the file in its models folder")
    return load_file(weights)


def _float_from_integer(net: nn.Sequential, tensors: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    """Float parameters of ``latent.<name>`` rebuilt from its exported integer network."""
    layers = [(n, m) for n, m in net.named_children() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if f"exact.{name}.0.weight" not in tensors:
        return {}  # a network the source does not have (e.g. slices added to a hyperprior) starts fresh
    exact = IntegerNet.from_tensors(tensors, f"exact.{name}").layers
    if len(exact) != len(layers):
        raise ValueError(f"integer {name} has {len(exact)} layers, the model {len(layers)}")
    out = {}
    for (n, m), il in zip(layers, exact):
        weight = il.weight.double().div(2.0**il.shift).float()
        bias = il.bias.double().div(2.0 ** (il.shift + ACT_BITS)).float()
        # a layer that exports itself its own way rebuilds itself too (nn.layers.WidenedConv2d)
        rebuild = getattr(m, "from_integer", None)
        params = rebuild(weight, bias) if callable(rebuild) else {"weight": weight, "bias": bias}
        out.update({f"latent.{name}.{n}.{k}": v for k, v in params.items()})
    return out
