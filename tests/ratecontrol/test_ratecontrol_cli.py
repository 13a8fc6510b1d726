"""``lic encode`` with targets and folder budgets: results, summaries, exit codes."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from ratecontrol_testmodel import rd_model, rd_models_dir, smooth_image  # noqa: F401  (fixtures)

import liccodec
from liccodec.cli.main import main
from liccodec.container import read_header
from liccodec.eval.metrics import psnr_rgb


@pytest.fixture()
def run(rd_model):
    runner = CliRunner()

    def _run(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
    return _run


@pytest.fixture()
def png(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(smooth_image(1)).save(p)
    return p


@pytest.fixture()
def photos(tmp_path):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):
        Image.fromarray(smooth_image(i + 1, 128 + 64 * i, 192)).save(src / name)
    return src


def _lics(folder):
    return sorted(folder.rglob("*.lic"))


def test_target_size(run, png, rd_model):
    r = run("encode", png, "-m", rd_model, "--target-size", "0.45k")
    assert r.exit_code == 0, r.output
    data = png.with_suffix(".lic").read_bytes()
    assert len(data) <= 450 and "target 450 bytes" in r.stderr and "encodes" in r.stderr


def test_target_bpp_and_psnr(run, png, rd_model, tmp_path):
    r = run("encode", png, tmp_path / "b.lic", "-m", rd_model, "--target-bpp", "0.07")
    assert r.exit_code == 0, r.output
    assert 8 * (tmp_path / "b.lic").stat().st_size / (192 * 256) <= 0.07
    r = run("encode", png, tmp_path / "p.lic", "-m", rd_model, "--target-psnr", "27")
    assert r.exit_code == 0, r.output
    out = np.asarray(liccodec.decode((tmp_path / "p.lic").read_bytes()))
    assert psnr_rgb(np.asarray(Image.open(png)), out) >= 27 and "decodes" in r.stderr


def test_targets_not_met_exit_8(run, png, rd_model, tmp_path):
    r = run("encode", png, tmp_path / "x.lic", "-m", rd_model, "--target-size", "100")
    assert r.exit_code == 8 and "smallest achievable" in r.stderr
    r = run("encode", png, tmp_path / "x.lic", "-m", rd_model, "--target-psnr", "60")
    assert r.exit_code == 8 and "reaches only" in r.stderr
    assert not (tmp_path / "x.lic").exists()


@pytest.mark.parametrize("args", [["-q", "3", "--target-size", "1k"], ["--target-bpp", "0.1", "--target-psnr", "30"],
                                  ["--target-size", "lots"], ["--avg-bpp", "0.1"], ["--target-bpp", "-1"]])
def test_bad_combinations_exit_2(run, png, rd_model, args):
    r = run("encode", png, "-m", rd_model, *args)
    assert r.exit_code == 2, r.output


def test_folder_budget_is_never_exceeded(run, photos, rd_model, tmp_path):
    out = tmp_path / "out"
    pixels = sum(np.asarray(Image.open(p)).shape[0] * 192 for p in sorted(photos.rglob("*.png")))
    for bpp in ("0.07", "0.09"):
        report = tmp_path / f"report{bpp}.json"
        r = run("encode", photos, "-o", out, "-m", rd_model, "--avg-bpp", bpp, "--grid", "7", "--overwrite",
                "--report", report)
        assert r.exit_code == 0, r.output
        files = _lics(out)
        assert len(files) == 3
        total = sum(f.stat().st_size for f in files)
        assert total <= int(float(bpp) * pixels / 8)
        rep = json.loads(report.read_text())
        assert rep["total_bytes"] == total and rep["exact"]["mean_quality"] >= rep["lagrangian"]["mean_quality"]
        assert "Lagrangian" in r.stderr and "bytes" in r.stderr


def test_folder_total_size_rerun_and_infeasible(run, photos, rd_model, tmp_path):
    out = tmp_path / "out"
    r = run("encode", photos, "-o", out, "-m", rd_model, "--total-size", "1.3k", "--grid", "5")
    assert r.exit_code == 0, r.output
    first = {f: f.read_bytes() for f in _lics(out)}
    assert sum(map(len, first.values())) <= 1300
    r = run("encode", photos, "-o", out, "-m", rd_model, "--total-size", "1.3k", "--grid", "5")  # a rerun keeps them
    assert r.exit_code == 0, r.output
    assert {f: f.read_bytes() for f in _lics(out)} == first
    r = run("encode", photos, "-o", tmp_path / "none", "-m", rd_model, "--total-size", "200")
    assert r.exit_code == 8 and "cannot be met" in r.stderr


def test_folder_with_a_per_image_target(run, photos, rd_model, tmp_path):
    out = tmp_path / "each"
    r = run("encode", photos, "-o", out, "-m", rd_model, "--target-size", "420")
    assert r.exit_code == 0, r.output
    files = _lics(out)
    assert len(files) == 3 and all(f.stat().st_size <= 420 for f in files)
    assert len({read_header(f.read_bytes()).quality for f in files}) > 1  # each image searched on its own
