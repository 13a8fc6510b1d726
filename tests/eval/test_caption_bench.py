"""``lic caption-bench`` (liccodec.eval.caption): one encode per image and quality, three
decodings of the same latents, the caption's bytes in the captioned rate."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(d / name)
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps({"_about": "x", "a.png": "noise one", "b.png": "noise two, longer caption"}))
    return d, caps


def test_bench_counts_the_caption_and_decodes_three_ways(tiny_models_dir, monkeypatch, tmp_path):
    from liccodec.eval.caption import bench, markdown
    from liccodec.train.data import read_captions

    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    d, caps = _folder(tmp_path)
    res = bench(d, read_captions(caps), "selic.tiny", (1.0, 3.0))
    assert res["images"] == 2 and len(res["rows"]) == 4       # c.png has no caption
    for r in res["rows"]:
        assert r["bytes_right"] - r["bytes_none"] == r["caption_bytes"] + 9
        # the tiny model's FiLM blocks are zero: every decoding is charm's
        assert r["psnr_none"] == r["psnr_right"] == r["psnr_wrong"]
    assert set(res["bd_rate_vs_none"]) == {"right", "wrong"}
    assert "| 3 |" in markdown(res)


def test_cli(tiny_models_dir, monkeypatch, tmp_path):
    from liccodec.cli.main import main

    monkeypatch.setenv("LICCODEC_MODELS", str(tiny_models_dir))
    d, caps = _folder(tmp_path)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["caption-bench", str(d), "--captions", str(caps), "-m", "msh.tiny",
                                  "-q", "2", "--json", str(out)])
    assert r.exit_code == 0 and "PSNR right" in r.output, r.output
    assert json.loads(out.read_text())["summary"][0]["images"] == 2
    r = CliRunner().invoke(main, ["caption-bench", str(d), "--captions", str(caps), "-m", "msh.tiny",
                                  "--group", "holdout"])
    assert r.exit_code == 2 and "no group 'holdout'" in r.output, r.output
