"""Classical codec adapters: round trips on a tiny synthetic image, names, skipping."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liccodec.eval import classical
from liccodec.eval.classical import BY_NAME_ONLY, CLASSICAL, CodecUnavailable, make_codecs, resolve_names
from liccodec.eval.metrics import psnr_rgb


def _build(name: str) -> classical.Codec:
    try:
        return CLASSICAL[name](1)
    except CodecUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", list(CLASSICAL))
def test_round_trip(name: str, tiny_rgb: np.ndarray) -> None:
    codec = _build(name)
    img = Image.fromarray(tiny_rgb)
    low, high = codec.settings[0], codec.settings[-1]
    data_low, data_high = codec.encode(img, low), codec.encode(img, high)
    assert 0 < len(data_low) < len(data_high) < tiny_rgb.size  # compresses; more bits at high
    rec_low = np.asarray(codec.decode(data_low))
    rec_high = np.asarray(codec.decode(data_high))
    assert rec_high.shape == tiny_rgb.shape and rec_high.dtype == np.uint8
    assert psnr_rgb(tiny_rgb, rec_high) > psnr_rgb(tiny_rgb, rec_low)
    assert psnr_rgb(tiny_rgb, rec_high) > 30.0
    # The same input and setting give the same bytes (no timestamps or randomness in files).
    assert codec.encode(img, high) == data_high
    meta = codec.meta()
    assert meta["codec"] == name and meta["version"] and meta["threads"] >= 1


def test_names_and_aliases() -> None:
    assert resolve_names(["jpeg", "webp", "jpeg-420"]) == ["jpeg-420", "jpeg-444", "webp"]
    assert resolve_names(["all"]) == [n for n in CLASSICAL if n not in BY_NAME_ONLY]  # slow presets: by name only
    assert "avif-444-s2" in BY_NAME_ONLY
    assert resolve_names(["avif-444-s2"]) == ["avif-444-s2"]
    with pytest.raises(ValueError, match="unknown codec"):
        resolve_names(["jpeg3000"])


def test_missing_library_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = classical.importlib.import_module

    def no_jxl(name: str):
        if name.startswith("pillow_jxl"):
            raise ImportError("No module named 'pillow_jxl'")
        return real_import(name)

    monkeypatch.setattr(classical.importlib, "import_module", no_jxl)
    codecs, skipped = make_codecs(["jpeg-420", "jxl"])
    assert [c.name for c in codecs] == ["jpeg-420"]
    assert "pillow-jxl-plugin" in skipped["jxl"]


def test_hevc_without_ffmpeg_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    classical._ffmpeg_with_x265.cache_clear()
    monkeypatch.setattr(classical, "_ffmpeg_candidates", lambda: [])
    try:
        _, skipped = make_codecs(["hevc"])
    finally:
        classical._ffmpeg_with_x265.cache_clear()
    assert "ffmpeg" in skipped["hevc-444"]
