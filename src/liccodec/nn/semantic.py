"""Caption conditioning: a fixed text embedding and the FiLM layer that applies it.

After SELIC (Fu, Liang, Fang, Han, "SELIC: Semantic-Enhanced Learned Image Compression via
High-Level Textual Guidance", arXiv 2504.01279, 2025), which turns a text description of the
image into a fixed-size tensor and fuses it with the latent. Here the text is the user's
caption (no captioner is available), and the fusion is on the float side of the decoder only::

    caption --caption_embedding (hashed words, word pairs, character trigrams; fixed)--> e
    e --CaptionFiLM.mlp (learned)--> (gamma, beta) per channel
    g_s features h --> h * (1 + gamma) + beta

:func:`caption_embedding` has no parameters and no vocabulary: each feature of the caption
(a lower-cased word, two neighbouring words, a character trigram of ``<word>``) is hashed
(BLAKE2b) to one of ``dim`` coordinates with a sign, the weighted counts are summed and the
vector is L2-normalised (a "hashing trick" bag of features). It is plain Python and numpy,
so every machine computes the same vector for an ASCII caption (the case mapping of other
scripts follows Python's Unicode tables), and it needs nothing downloaded. What it knows
about meaning it learns in the MLP behind it: captions sharing words or word stems land
near each other, synonyms do not.

:class:`CaptionFiLM`'s last layer starts at zero, so an untrained layer, a layer without a
caption, and a caption of no words all leave ``h`` exactly as it was.
"""
from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

EMBED_DIM = 512
# words that say nothing about a picture's content; dropped before hashing
_STOPWORDS = frozenset("a an the of and or in on at to with by for from is are its it this that".split())
_WORD = re.compile(r"\w+")


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return h % dim, (1.0 if (h >> 63) & 1 else -1.0)


def caption_features(text: str) -> list[tuple[str, float]]:
    """The weighted features of a caption: each content word (1), each pair of neighbouring
    content words (0.5), the character trigrams of each ``<word>`` (1 in all per word)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
    feats = [(f"w:{w}", 1.0) for w in words]
    feats += [(f"b:{a} {b}", 0.5) for a, b in zip(words, words[1:])]
    for w in words:
        padded = f"<{w}>"
        grams = [padded[i:i + 3] for i in range(len(padded) - 2)]
        feats += [(f"t:{g}", 1.0 / len(grams)) for g in grams]
    return feats


def caption_embedding(text: str | None, dim: int = EMBED_DIM) -> np.ndarray:
    """(dim,) float32, unit length; zeros for None or a caption without words."""
    e = np.zeros(dim, dtype=np.float64)
    for feature, weight in caption_features(text or ""):
        i, sign = _bucket(feature, dim)
        e[i] += sign * weight
    n = np.linalg.norm(e)
    return (e / n if n > 0 else e).astype(np.float32)


def embed_captions(captions: Sequence[str | None], dim: int = EMBED_DIM) -> Tensor:
    """(len(captions), dim) float32: :func:`caption_embedding` of each, zeros for None."""
    return torch.from_numpy(np.stack([caption_embedding(c, dim) for c in captions]))


class CaptionFiLM(nn.Module):
    """Feature-wise linear modulation of C channels by a caption embedding:
    ``h * (1 + gamma) + beta``, ``(gamma, beta) = mlp(e)``, one pair per image and channel.

    The embedding is set from outside (``embedding``: (B, D) or (1, D), None = no caption),
    so that the layer sits in an ``nn.Sequential`` synthesis like any other; an all-zero
    row (an image without a caption) leaves its image untouched. Pointwise in space, so it
    tiles as nothing (:meth:`axis_ops`).
    """

    def __init__(self, channels: int, embed_dim: int = EMBED_DIM, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.embedding: Tensor | None = None

    def forward(self, h: Tensor) -> Tensor:
        e = self.embedding
        if e is None:
            return h
        if e.shape[0] not in (1, h.shape[0]):
            raise ValueError(f"{e.shape[0]} caption embeddings for a batch of {h.shape[0]}")
        e = e.to(h.device, torch.float32)
        with torch.autocast(h.device.type, enabled=False):
            gb = self.mlp(e) * (e.abs().sum(1, keepdim=True) > 0)   # no caption: no change
        gamma, beta = gb[:, :, None, None].chunk(2, dim=1)
        return (h.float() * (1 + gamma) + beta).to(h.dtype)

    def axis_ops(self) -> list[tuple[bool, int, int, int]]:
        return []
