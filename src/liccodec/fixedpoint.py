"""The integer conventions that decide what a .lic file means, in one torch-free place.

The torch models (``liccodec.nn.integer``, ``liccodec.latent``) that train, export and
encode, and the numpy decoder (``liccodec.runtime``) both read them from here, so the two
cannot drift apart: a file's latents are a function of these numbers and the shipped
integer weights alone.
"""
from __future__ import annotations

ACT_BITS = 10                 # fractional bits of every integer-network activation
ACT_CLIP = (1 << 22) - 1      # activations are clipped to +-ACT_CLIP
W_LIMIT = (1 << 15) - 1       # |integer weight| bound
EXACT_LIMIT = 1 << 53         # every partial sum of an integer layer stays below this (float64-exact)

Q_UNIT = 1000                 # qualities travel as integers in thousandths
GAIN_BITS = 16                # fixed-point bits of the exported inverse hyper-gains
Z_LIMIT = 1 << 15             # |z symbol| bound (keeps the integer gain product inside int64)

# the integer softmax of the dictionary attention (liccodec.nn.dictionary)
LOGIT_BITS = 8                # attention logits in units of 2**-8 (nat)
EXP_BITS = 16                 # its exp table in units of 2**-16: exp(0) = 1 << EXP_BITS

# container streams: the rANS words of every latent (in decoding order) and their escapes
LATENT_STREAM = "ans"
ESCAPE_STREAM = "esc"


def level_of_quality(q_milli: int) -> float:
    """Trained level (0-based, fractional) of a quality in thousandths."""
    return (q_milli - Q_UNIT) / Q_UNIT


def quality_of_level(level: float) -> int:
    """Quality in thousandths of a (fractional) trained level: level 0 is quality 1."""
    return int(round((level + 1) * Q_UNIT))


#: Qualities reach this many levels below level 0 (quality 1 - BELOW .. 1), extrapolated from
#: levels 0 and 1 (models with two levels or more): the hyper-gains linearly, in integers as
#: between levels, y's gains geometrically (``nn.GainUnits``; docs/format.md)
BELOW = 1


def level_split(q_milli: int, levels: int) -> tuple[int, int]:
    """Quality in thousandths (1000 = level 0) -> (lower level, weight of the upper in 1/1000);
    below level 0, level 0 and a negative weight (linear extrapolation from levels 0 and 1)."""
    lv = q_milli - Q_UNIT
    if not -BELOW * Q_UNIT <= lv <= (levels - 1) * Q_UNIT:
        raise ValueError(f"quality {q_milli / Q_UNIT} outside [{1 - BELOW}, {levels}]")
    if lv < 0:
        return 0, (lv if levels > 1 else 0)
    lo, f = divmod(lv, Q_UNIT)
    if lo == levels - 1 and levels > 1:
        lo, f = levels - 2, Q_UNIT
    return lo, f
