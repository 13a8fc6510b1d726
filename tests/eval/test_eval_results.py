"""Results files (CompressAI's layout) and the anchor loaders."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from liccodec.eval.results import (DEFAULT_ANCHORS, RESULT_KEYS, VTM_KEY, RDCurve, load_anchors,
                                   load_curve, load_curves, load_dir, parse_tcm_markdown)


def _curve() -> RDCurve:
    return RDCurve(name="Codec X", bpp=[0.1, 0.5], psnr=[28.0, math.inf], ms_ssim=[0.9, None],
                   encoding_time=[0.01, 0.02], decoding_time=[0.001, float("nan")],
                   description="test codec", kind="classical",
                   meta={"codec": "x", "settings": [10, 50], "threads": 1},
                   per_image={"img1": {"bpp": [0.1, 0.5], "psnr-rgb": [28.0, 40.0]}})


def test_layout_and_round_trip(tmp_path: Path) -> None:
    path = _curve().save(tmp_path / "x.json")
    doc = json.loads(path.read_text())  # strict JSON: no NaN / Infinity
    assert set(doc) == {"name", "description", "results", "meta", "per_image"}
    assert list(doc["results"]) == list(RESULT_KEYS)
    assert doc["results"]["psnr-rgb"] == [28.0, None]
    assert doc["results"]["decoding_time"] == [0.001, None]
    assert doc["meta"]["source"] == "measured"

    back = load_curve(path)
    assert back.name == "Codec X" and back.source == "measured" and back.kind == "classical"
    assert back.bpp == [0.1, 0.5] and back.psnr == [28.0, None] and back.ms_ssim == [0.9, None]
    assert back.per_image["img1"]["psnr-rgb"] == [28.0, 40.0]
    assert back.meta["settings"] == [10, 50]
    assert back.points("psnr-rgb") == ([0.1], [28.0])


def test_compressai_paper_file_with_db_ms_ssim(tmp_path: Path) -> None:
    f = tmp_path / "paper.json"
    f.write_text(json.dumps({"name": "p", "description": "", "meta": {"source": "paper"},
                             "results": {"bpp": [0.2, 0.4], "ms-ssim-db-rgb": [10.0, 20.0]}}))
    c = load_curve(f)
    assert c.source == "anchor" and c.psnr is None
    assert c.ms_ssim == pytest.approx([0.9, 0.99])
    assert c.metric("ms-ssim-db") == pytest.approx([10.0, 20.0])


def test_sota_formats(tmp_path: Path) -> None:
    dcae = tmp_path / "DCAE_RD_data.json"
    dcae.write_text(json.dumps({"Kodak": {"bpp": [0.1, 0.3], "PSNR": [29.0, 33.0]},
                                "Kodak_MS-SSIM": {"bpp": [0.1, 0.3], "MS_SSIM": [13.0, 17.0]},
                                "CLIC": {"bpp": [0.1], "PSNR": [31.0]}}))
    mlic = tmp_path / "MLIC_kodak_mlicplusplus_mse.json"
    mlic.write_text(json.dumps({"psnr": [29.5, 33.5], "bpp": [0.1, 0.3]}))
    tcm = tmp_path / "LIC_TCM_RD_data.md"
    tcm.write_text("# Large\n## Kodak\nPSNR = [30.0, 32.5]\n\nBitrate = [0.15, 0.3]\n"
                   "## CLIC Pro\nPSNR = [31.8]\n\nBitrate = [0.12]\n"
                   "# Small\n## Kodak\nPSNR = [29.9, 32.4]\n\nBitrate = [0.16, 0.31]\n")

    d = load_curves(dcae)
    assert [c.name for c in d] == ["DCAE", "DCAE (MS-SSIM)"]
    assert d[0].psnr == [29.0, 33.0] and d[1].metric("ms-ssim-db") == pytest.approx([13.0, 17.0])
    (m,) = load_curves(mlic)
    assert m.name == "MLIC++" and m.bpp == [0.1, 0.3] and m.psnr == [29.5, 33.5]
    assert parse_tcm_markdown(tcm.read_text()) == {"Large": ([0.15, 0.3], [30.0, 32.5]),
                                                   "Small": ([0.16, 0.31], [29.9, 32.4])}
    assert sorted(load_dir(tmp_path)) == ["DCAE_RD_data:DCAE", "DCAE_RD_data:DCAE (MS-SSIM)",
                                          "LIC_TCM_RD_data:TCM-Large", "LIC_TCM_RD_data:TCM-Small",
                                          "MLIC_kodak_mlicplusplus_mse"]


def test_published_anchors_load(anchors_dir: Path) -> None:
    anchors = load_anchors(anchors_dir)
    assert list(anchors) == [name for name, _, _ in DEFAULT_ANCHORS]
    assert all(a.source == "anchor" and a.has("psnr-rgb") for a in anchors.values())
    assert anchors[VTM_KEY].has("ms-ssim-rgb")
    everything = load_dir(anchors_dir, recursive=True)
    assert len(everything) > 50
