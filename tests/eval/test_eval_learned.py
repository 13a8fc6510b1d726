"""The liccodec adapter, against a stand-in for the public API."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

import liccodec
from liccodec.eval import bench
from liccodec.eval.classical import CodecUnavailable
from liccodec.eval.learned import LiccodecCodec, make_models, spread_qualities


@dataclass
class FakeSpec:
    id: str
    quality_min: float = 1.0
    quality_max: float = 7.0
    quality_default: float = 4.0
    available: bool = True
    sha256: str = "ab" * 32


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """liccodec.encode/decode/list_models replaced by JPEG with quality 10*q; records calls."""
    calls: list[tuple[str, float]] = []

    def encode(image: Image.Image, model: str, quality: float) -> bytes:
        calls.append((model, quality))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=int(10 * quality))
        return buf.getvalue()

    def decode(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    specs = [FakeSpec("fake.mse"), FakeSpec("fake.nowts", available=False)]
    monkeypatch.setattr(liccodec, "encode", encode, raising=False)
    monkeypatch.setattr(liccodec, "decode", decode, raising=False)
    monkeypatch.setattr(liccodec, "list_models", lambda: specs, raising=False)
    return calls


def test_spread_qualities() -> None:
    assert spread_qualities(1, 7, 4) == [1.0, 3.0, 5.0, 7.0]
    assert spread_qualities(0.5, 0.5, 8) == [0.5]


def test_adapter_through_bench(fake_api, tiny_rgb: np.ndarray) -> None:
    codec = LiccodecCodec("fake.mse", num_qualities=3)
    assert codec.settings == (1.0, 4.0, 7.0) and codec.kind == "learned"
    images = [bench.EvalImage("a", tiny_rgb), bench.EvalImage("b", tiny_rgb[::-1].copy())]
    curve = bench.evaluate(codec, images)
    assert len(curve.bpp) == 3 and curve.bpp[0] < curve.bpp[-1]
    assert curve.psnr[0] < curve.psnr[-1]
    assert curve.ms_ssim == [None, None, None]  # 64 px is too small for MS-SSIM
    assert set(curve.per_image) == {"a", "b"} and len(curve.per_image["a"]["bpp"]) == 3
    assert ("fake.mse", 7.0) in fake_api
    assert curve.meta["kind"] == "learned" and "fake.mse" in curve.meta["options"]


def test_unavailable_models_are_skipped(fake_api) -> None:
    codecs, skipped = make_models(["fake.mse", "fake.nowts", "nope.x"])
    assert [c.name for c in codecs] == ["fake.mse"]
    assert "not present" in skipped["fake.nowts"] and "not registered" in skipped["nope.x"]
    with pytest.raises(CodecUnavailable):
        LiccodecCodec("fake.nowts")


def test_perceptual_metrics_flow_into_curve_report_and_json(fake_api, tiny_rgb: np.ndarray, monkeypatch,
                                                            tmp_path) -> None:
    """`lic eval --metric`: a perceptual distance is scored per image outside the timed part,
    averaged per setting, kept in the results JSON, and compared as a distance (lower is
    better) in the BD-rate table. A stand-in scorer (mean absolute error) replaces LPIPS."""
    from liccodec.eval.report import bd_matrix
    from liccodec.eval.results import load_curve

    mae = lambda a, b: float(np.abs(a.astype(float) - b).mean())  # noqa: E731
    monkeypatch.setattr(bench, "perceptual_scorers", lambda keys: {k: mae for k in keys})
    images = [bench.EvalImage("a", tiny_rgb)]
    good = bench.evaluate(LiccodecCodec("fake.mse", num_qualities=4), images, metrics=["lpips-alex"])
    lpips = good.metric("lpips-alex")
    assert len(lpips) == 4 and lpips[0] > lpips[-1] > 0
    assert good.per_image["a"]["lpips-alex"] == lpips
    back = load_curve(good.save(tmp_path / "c.json"))
    assert back.metric("lpips-alex") == lpips and back.metric("dists") is None
    worse = load_curve(tmp_path / "c.json")
    worse.bpp = [b * 1.2 for b in worse.bpp]
    assert bd_matrix([worse], [good], "lpips-alex", lower_is_better=True)[0][0] == pytest.approx(20.0, abs=0.1)
