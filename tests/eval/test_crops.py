"""Side-by-side crops: the classical codec gets the largest file not above the target rate."""
from __future__ import annotations

import numpy as np

from liccodec.eval.classical import make_codecs
from liccodec.eval.crops import code, match_rate, side_by_side


def test_match_rate_never_exceeds_the_target_and_is_tight(tiny_rgb: np.ndarray) -> None:
    (jpeg,), _ = make_codecs(["jpeg-420"])
    target = code(jpeg, tiny_rgb, 40).bpp + 0.01
    got = match_rate(jpeg, tiny_rgb, target)
    assert got.bpp <= target
    assert code(jpeg, tiny_rgb, got.setting + 1).bpp > target or got.setting == max(jpeg.settings)


def test_side_by_side_writes_crops_and_a_table(tiny_rgb: np.ndarray, tmp_path) -> None:
    (jpeg, webp), _ = make_codecs(["jpeg-444", "webp"])
    md = side_by_side(tiny_rgb, [jpeg], 50, [webp], (8, 8, 16, 16), tmp_path, "tiny", zoom=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-jpeg-444.png", "tiny-original.png", "tiny-webp.png"]
    assert "| webp |" in md and "PSNR-RGB" in md
