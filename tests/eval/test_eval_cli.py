"""``lic eval`` end to end on two tiny images (JPEG only, a fake VTM anchor)."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from liccodec.cli.main import main


def _fake_anchors(root: Path) -> Path:
    d = root / "anchors" / "compressai_kodak"
    d.mkdir(parents=True)
    (d / "vtm.json").write_text(json.dumps({"name": "VTM", "description": "VTM", "results": {
        "bpp": [0.5, 1.0, 2.0, 4.0], "psnr-rgb": [30.0, 34.0, 38.0, 42.0]}}))
    return root / "anchors"


def test_eval_writes_results_plot_and_report(tmp_path: Path, image_folder: Path) -> None:
    out, report = tmp_path / "res", tmp_path / "report.md"
    anchors = _fake_anchors(tmp_path)
    result = CliRunner().invoke(main, [
        "eval", str(image_folder), "--out-dir", str(out), "--report", str(report),
        "--codecs", "jpeg-420,hevc", "--models", "none", "--anchors", str(anchors), "--quiet"])
    assert result.exit_code == 0, result.output

    doc = json.loads((out / "jpeg-420.json").read_text())
    assert doc["name"] == "JPEG 4:2:0"
    n = len(doc["meta"]["settings"])
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
        assert len(doc["results"][key]) == n
    assert sorted(doc["per_image"]) == ["img0", "img1"]
    assert (out / "rd_images.png").stat().st_size > 10_000

    text = report.read_text()
    assert text.splitlines()[0].startswith("# liccodec evaluation")
    assert "lic eval " in text.split("## Machine")[0]  # the command line comes first
    assert "VTM (VVC intra)" in text and "BD-rate, PSNR-RGB" in text
    assert "`hevc-444`" in text or "ffmpeg" in text  # run or skipped with a note
    assert "JPEG 4:2:0" in text.split("## Speed")[1]


def test_eval_errors_are_clean(tmp_path: Path, image_folder: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["eval", str(image_folder), "--codecs", "jpeg3000",
                               "--out-dir", str(tmp_path / "o"), "--report", str(tmp_path / "r.md")])
    assert bad.exit_code == 2 and "unknown codec" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(main, ["eval", str(empty), "--codecs", "jpeg-420", "--models", "none",
                                "--out-dir", str(tmp_path / "o"), "--report", str(tmp_path / "r.md")])
    assert none.exit_code == 2 and "no images" in none.output


def test_eval_model_with_compressai_reference(tmp_path: Path, image_folder: Path, tiny: str) -> None:
    out, report = tmp_path / "res", tmp_path / "report.md"
    result = CliRunner().invoke(main, [
        "eval", str(image_folder), "--out-dir", str(out), "--report", str(report),
        "--codecs", "none", "--models", tiny, "--qualities", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / f"{tiny}.compressai-ref.json").read_text())
    assert [r["quality"] for r in rows] == [1, 2, 3]
    assert all(r["images"] == 2 and r["cai_bpp"] > 0 for r in rows)
    section = report.read_text().split("through CompressAI")[1].split("## Points")[0]
    assert "size diff %" in section and section.count("\n| ") >= 4


def test_eval_reuse_skips_compressai_side_by_side_records(tmp_path: Path, image_folder: Path) -> None:
    out, report = tmp_path / "res", tmp_path / "report.md"
    runner = CliRunner()
    args = ["eval", str(image_folder), "--out-dir", str(out), "--report", str(report),
            "--models", "none", "--anchors", str(_fake_anchors(tmp_path)), "--quiet"]
    assert runner.invoke(main, args + ["--codecs", "jpeg-420"]).exit_code == 0
    (out / "m.compressai-ref.json").write_text(json.dumps([{"quality": 1, "lic_bpp": 0.2}]))
    result = runner.invoke(main, args + ["--codecs", "none", "--reuse"])
    assert result.exit_code == 0, result.output
    assert "JPEG 4:2:0" in report.read_text()
