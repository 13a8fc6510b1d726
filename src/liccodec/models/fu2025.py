"""SELIC-style caption guidance (Fu, Liang, Fang, Han, "SELIC: Semantic-Enhanced Learned
Image Compression via High-Level Textual Guidance", arXiv 2504.01279, 2025) on ``charm``:
a text description of the image, turned into a fixed-size tensor, modulates the synthesis.

    x --g_a--> y --[charm's channel-conditional entropy model]--> y_hat
    caption (stream "caption" of the file) --caption_embedding--> e
    y_hat --g_s [FiLM(e) after the 1/8 and 1/4 stages]--> x_hat

Where it departs from the paper (docs/models/selic.md): the caption is the user's
(``lic encode --caption``), not a captioner's; its embedding is a fixed hashed bag of words and
trigrams (``liccodec.nn.semantic``) with a small learned MLP, not a pretrained text encoder;
and the fusion is on the decoder's float side only, so the entropy model, every exact
integer part and hence the coded latents are charm's. The file carries the caption's text
(its bytes are the whole rate cost) and the decoder recomputes the embedding.

Warm start: g_s keeps charm's layers under charm's names (``g_s.0`` .. ``g_s.6``); the FiLM
blocks are extra entries (``g_s.film8``, ``g_s.film4``) whose last layer starts at zero, so
with ``init`` = charm.mse the model is exactly charm.mse, with or without a caption, until the
blocks are trained (freeze everything else: docs/selic.toml).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from torch import Tensor, nn

from liccodec.models.base import CodecOut
from liccodec.models.minnen2018 import GS_STAGE_END, with_stage_blocks
from liccodec.models.minnen2020 import CharmConfig, ChannelConditionalCodec
from liccodec.models.registry import register_arch
from liccodec.nn.semantic import EMBED_DIM, CaptionFiLM, embed_captions
from liccodec.tiling import TilePolicy

#: g_s's upsampling stages: the stride (image pixels per position) of each stage's output and
#: the index, in msh's g_s, of the inverse GDN that ends it
_GS_STAGE = {s: GS_STAGE_END[s] for s in (8, 4, 2)}


@dataclass
class SelicConfig(CharmConfig):
    embed_dim: int = EMBED_DIM    # coordinates of the hashed caption embedding
    film_hidden: int = 128        # width of each FiLM block's MLP
    # the strides of g_s's stages whose output a FiLM block modulates
    film_at: tuple[int, ...] = field(default_factory=lambda: (8, 4))


def _with_film(seq: nn.Sequential, widths: dict[int, int], cfg: SelicConfig) -> nn.Sequential:
    return with_stage_blocks(
        seq, _GS_STAGE, cfg.film_at,
        lambda s: [(f"film{s}", CaptionFiLM(widths[s], cfg.embed_dim, cfg.film_hidden))], "film_at")


Captions = Sequence["str | None"]


@register_arch("selic", config=SelicConfig,
               tiny=dict(N=8, M=12, lambdas=[0.004, 0.02, 0.08], slices=3, hidden=16, lrp=True,
                         embed_dim=32, film_hidden=8),
               summary="charm + caption FiLM in the synthesis (after SELIC, Fu 2025; caption in the file)")
class Selic(ChannelConditionalCodec):
    """charm whose synthesis reads a caption. Without one (``captions=None`` or a None
    entry) it is charm exactly; the encoder never reads the caption."""

    #: ``liccodec.codec`` passes a file's caption to :meth:`decompress`
    uses_caption = True

    def __init__(self, cfg: SelicConfig, inference: bool = False):
        super().__init__(cfg, inference)
        s1, s2, s3 = cfg.synthesis or (cfg.N, cfg.N, cfg.N)
        # reassigning keeps g_s in its registration slot (state-dict order)
        self.g_s = _with_film(self.g_s, {8: s1, 4: s2, 2: s3}, cfg)

    @property
    def films(self) -> list[CaptionFiLM]:
        return [m for m in self.g_s if isinstance(m, CaptionFiLM)]

    @contextmanager
    def captioned(self, captions: Captions | None) -> Iterator[None]:
        """Run g_s under ``captions`` (one per image of the batch, or one for all; None: none)."""
        e = None
        if captions is not None and any(c for c in captions):
            e = embed_captions(list(captions), self.cfg.embed_dim)
        for m in self.films:
            m.embedding = e
        try:
            yield
        finally:
            for m in self.films:
                m.embedding = None

    def forward(self, x: Tensor, level: Tensor, captions: Captions | None = None) -> CodecOut:
        with self.captioned(captions):
            return super().forward(x, level)

    def decompress(self, streams: dict[str, bytes], hw: tuple[int, int], q_milli: int,
                   precision: str = "fp32", tiles: TilePolicy | None = None,
                   qmap: np.ndarray | None = None, caption: str | None = None) -> Tensor:
        """charm's decompress with g_s conditioned on ``caption`` (the file's, or None)."""
        with self.captioned(None if caption is None else [caption]):
            return super().decompress(streams, hw, q_milli, precision, tiles, qmap)
