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

* with ``grow``, lets a tensor grow into a wider layer of the same name (a config with more
  latent channels M, say): the source fills the leading block of every dimension and the
  new channels start so that the model computes what the source did (:func:`grow`).

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
def warm_start(model: nn.Module, weights: str | Path, reinit: tuple[str, ...] = (),
               grow_layers: bool = False, live: float = 0.0) -> list[str]:
    """Load shipped weights into a training model; returns the state names left as they were
    initialised (the z prior's table buffers always: training does not use them). Tensors
    whose names start with a ``reinit`` prefix and whose shapes differ stay fresh; with
    ``grow_layers``, a tensor smaller than the model's grows into it (:func:`grow`); any
    other shape mismatch is an error; ``live`` > 0 grows new latent channels live
    (``TrainConfig.grow_live``, the models' ``grow_rules``)."""
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
        new[k] = v
    for name, net in model.latent.integer_nets().items():
        new.update(_float_from_integer(net, tensors, name))
    rules = model.grow_rules(live) if grow_layers else {}
    for k in list(new):
        if new[k].shape == state[k].shape:
            continue
        if grow_layers and new[k].dim() == state[k].dim() and all(
                a <= b for a, b in zip(new[k].shape, state[k].shape)):
            new[k] = grow(model, k, new[k], state[k], level_table=k in level_tables,
                          **rules.get(k.rsplit(".", 1)[0], {}))
        elif k.startswith(tuple(reinit)):
            del new[k]
        else:
            raise ValueError(f"{k}: shipped shape {tuple(new[k].shape)} does not fit {tuple(state[k].shape)}")
    model.load_state_dict(new, strict=False)
    return sorted(k for k in state if k not in new)


def grow(model: nn.Module, name: str, src: Tensor, init: Tensor, *, level_table: bool = False,
         new_outputs: str = "init", new_inputs: str = "zero", chunks: int = 1,
         new_bias: tuple[float, ...] = ()) -> Tensor:
    """The model's tensor ``name`` (initialised as ``init``) grown from the smaller ``src``.

    A level table (levels, C) gives its new channels each level's mean over the old ones. A
    convolution's (or its bias's) old outputs keep the source's values; weights from new
    inputs to old outputs are zero, so the old outputs stay what they were, unless
    ``new_inputs="init"`` (inputs that are zero at step 0 anyway, and that must get
    gradients); new outputs keep their initial weights, or start at zero
    (``new_outputs="zero"``). ``chunks`` > 1: the outputs are that many equal parts (a
    hyper-synthesis's scales and means) that each grow at their end; ``new_bias`` gives the
    new outputs' bias, one value per chunk (after ``new_outputs``). Any other tensor
    grows with the source in its leading block and its initial values elsewhere."""
    if level_table:
        out = src.mean(dim=1, keepdim=True).expand(init.shape).clone()
        out[:, :src.shape[1]] = src
        return out
    module = model.get_submodule(name.rsplit(".", 1)[0])
    if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        out = init.clone()
        out[tuple(slice(0, n) for n in src.shape)] = src
        return out
    o_dim, i_dim = (1, 0) if isinstance(module, nn.ConvTranspose2d) else (0, 1)
    if src.dim() == 1:
        o_dim, i_dim = 0, None
    n_old, n_new = src.shape[o_dim] // chunks, init.shape[o_dim] // chunks
    old_out = torch.cat([torch.arange(c * n_new, c * n_new + n_old) for c in range(chunks)])
    new_out = torch.tensor(sorted(set(range(init.shape[o_dim])) - set(old_out.tolist())), dtype=torch.long)
    out = init.clone()
    if new_outputs == "zero":
        out.index_fill_(o_dim, new_out, 0.0)
    if i_dim is not None:
        n_in = src.shape[i_dim]
        if new_inputs == "zero":  # new inputs -> old outputs
            block = out.index_select(o_dim, old_out)
            block.narrow(i_dim, n_in, out.shape[i_dim] - n_in).zero_()
            out.index_copy_(o_dim, old_out, block)
        block = out.index_select(o_dim, old_out)
        block.narrow(i_dim, 0, n_in).copy_(src)
        out.index_copy_(o_dim, old_out, block)
    else:
        out.index_copy_(0, old_out, src)
        for c, value in enumerate(new_bias):
            out[c * n_new + n_old:(c + 1) * n_new] = value
    return out


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
