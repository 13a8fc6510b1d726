"""Dictionary-based entropy model: the channel-conditional slices of ``latent.channelwise``
with a learned dictionary, queried by each slice's context through cross-attention, as one
more input of the slice's parameter network.

Lu et al., "Learned Image Compression with Dictionary-based Entropy Model", CVPR 2025 (DCAE,
arXiv 2504.00496). The dictionary ``D`` (``dict_size`` entries of ``dict_dim``) holds typical
structures of latents, learned with the codec and shared by all slices; each slice has its
own attention site ``attn_i`` (``nn.dictionary``). Per slice ``i`` (``hs`` = the hyper-
synthesis output for its channels, ``y_hat_<i`` = the slices decoded before it, gained domain)::

    ctx_i = concat(hs_i scales, hs_i means, y_hat_0, ..., y_hat_{i-1})
    a_i   = attn_i(ctx_i, D)                                    (dict_out channels)
    (scales_i, means_i) = hs_i + cc_i(concat(ctx_i, a_i))
    y_sym_i = round(y_g_i - means_i)        y_hat_i = y_sym_i + means_i

and latent residual prediction (``lrp``) as in ``latent.channelwise``.

Exactness. ``a_i`` is computed by the integer attention of ``nn.dictionary`` (integer
query network, integer logits, an exp table, exact integer normalisation) from the same
integer context the slice network sees, and ``cc_i`` is an integer network over
``concat(ctx_i, a_i)``; so the decoder rebuilds every scale index and mean bit-exactly on
any machine. Training runs the float softmax.

Warm start. ``cc_i``'s first layer is a ``nn.layers.WidenedConv2d``: the charm slice
network's layer under its names plus weights for ``a_i`` that start at zero. So a model
started from a shipped ``charm`` (same ``N``, ``M``, ``slices``, ``hidden``, ``lrp``) is that
charm model bit for bit, in training's float forward and in the exported integer path
(whose streams are then charm's), while the attention already computes: the gradient
reaches the new weights from the first step, and the attention once they have moved.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from liccodec.latent.channelwise import ChannelConditional, ChannelExact
from liccodec.latent.hyperprior import GainedHyperprior
from liccodec.nn.dictionary import Dictionary, DictionaryAttention, IntegerDictionaryAttention, exp_table


class DictionaryStep:
    """Slice i's exact network as ``runtime.code_slices`` runs it: ``ctx -> cc_i(concat(ctx,
    attn_i(ctx)))`` on numpy int64. Its geometry is the attention's query network followed by
    the slice network, a halo wide enough for both branches (``liccodec.tiling``)."""

    def __init__(self, attn: IntegerDictionaryAttention, cc):
        self.attn, self.cc = attn, cc

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return [*self.attn.axis_ops(), *self.cc.axis_ops()]

    def __call__(self, ctx: np.ndarray) -> np.ndarray:
        return self.cc(np.concatenate([ctx, self.attn(ctx)], axis=1))


@dataclass
class DictionaryExact(ChannelExact):
    """The channel-conditional exact state (slice networks over the widened context) plus the
    integer attention sites and their shared exp table."""

    attn: tuple[IntegerDictionaryAttention, ...]

    @classmethod
    def fields_from(cls, t: dict[str, Tensor]) -> dict[str, object]:
        attn: list[IntegerDictionaryAttention] = []
        while f"exact.attn.{len(attn)}.keys" in t:
            attn.append(IntegerDictionaryAttention.from_tensors(t, f"exact.attn.{len(attn)}", t["exact.attn_exp"]))
        return {**super().fields_from(t), "attn": tuple(attn)}

    def to_tensors(self) -> dict[str, Tensor]:
        out = super().to_tensors()
        for i, a in enumerate(self.attn):
            out.update(a.to_tensors(f"exact.attn.{i}"))
        if self.attn:
            out["exact.attn_exp"] = self.attn[0].exp.to(torch.int32)
        return out


class DictionaryChannel(ChannelConditional):
    """:class:`ChannelConditional` whose slice networks also read a cross-attention over a
    learned dictionary (module docstring)."""

    exact_cls = DictionaryExact

    def __init__(self, N: int, M: int, levels: int, slices: int, hidden: int, dict_size: int, dict_dim: int,
                 dict_heads: int, dict_out: int, init_log_gain: Tensor | None = None, inference: bool = False,
                 lrp: bool = False):
        # set before the hyperprior builds the training parts, which reads them
        self.dict_size, self.dict_dim, self.dict_heads, self.dict_out = dict_size, dict_dim, dict_heads, dict_out
        super().__init__(N, M, levels, slices, hidden, init_log_gain, inference, lrp)

    def _build_training_parts(self, N: int, M: int) -> None:
        super()._build_training_parts(N, M)
        c = M // self.slices
        self.dictionary = Dictionary(self.dict_size, self.dict_dim)
        self.attn = nn.ModuleList(DictionaryAttention((i + 2) * c, self.dict_dim, self.dict_heads, self.dict_out,
                                                      self.hidden) for i in range(self.slices))

    def _extra_context(self) -> int:
        return self.dict_out

    training_only = (*ChannelConditional.training_only, "dictionary.", "attn.")
    # the dictionary and the attention's float parameters ship for warm starts; coding reads
    # the exported integer sites (the query networks ship as integer networks only)
    reference_only = (*GainedHyperprior.reference_only, "dictionary.", "attn.")

    def integer_nets(self) -> dict[str, nn.Sequential]:
        return {**super().integer_nets(), **{f"attn.{i}.query": a.query for i, a in enumerate(self.attn)}}

    def reference_tensors(self) -> dict[str, Tensor]:
        own = {f"attn.{i}.{n}": p.detach().float() for i, a in enumerate(self.attn)
               for n, p in a.named_parameters() if not n.startswith("query.")}
        return {**super().reference_tensors(), "dictionary.weight": self.dictionary.weight.detach().float(), **own}

    def _correct(self, i: int, ctx: Tensor) -> Tensor:
        a = self.attn[i](ctx, self.dictionary.weight)
        return self.cc[i](torch.cat([ctx, a.to(ctx.dtype)], dim=1))

    # ---- export and exact coding ----------------------------------------------------------
    def export_exact(self, scales: np.ndarray | None = None) -> dict[str, Tensor]:
        out = super().export_exact(scales)
        exp = torch.from_numpy(exp_table())
        sites = tuple(IntegerDictionaryAttention.from_float(a, self.dictionary.weight, exp, f"attention {i}")
                      for i, a in enumerate(self.attn))
        for i, a in enumerate(sites):
            out.update(a.to_tensors(f"exact.attn.{i}"))
        out["exact.attn_exp"] = exp.to(torch.int32)
        return out

    def _slice_nets(self, ex: DictionaryExact) -> list:
        if len(ex.attn) != self.slices:
            raise ValueError(f"weights carry {len(ex.attn)} attention sites, the model has {self.slices} slices")
        return [DictionaryStep(a, net._exact) for a, net in zip(ex.attn, ex.cc)]
