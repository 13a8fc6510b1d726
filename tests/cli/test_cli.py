"""The lic command line: outputs, summaries and documented exit codes."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from liccodec.cli.main import main
from liccodec.errors import EXIT_CODES


@pytest.fixture()
def run(tiny):
    runner = CliRunner()

    def _run(*args, input=None):
        return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    return _run


@pytest.fixture()
def png(tmp_path, photo):
    p = tmp_path / "photo.png"
    Image.fromarray(photo).save(p)
    return p


def test_encode_decode_default_names(run, png, tiny):
    r = run("encode", png, "-m", tiny, "-q", "2.5")
    assert r.exit_code == 0, r.output
    lic = png.with_suffix(".lic")
    assert lic.exists() and "bpp" in r.stderr
    out = png.parent / "back.png"
    r = run("decode", lic, "-o", out)
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (99, 70)


def test_never_overwrites_without_flag(run, png, tiny):
    run("encode", png, "-m", tiny)
    r = run("decode", png.with_suffix(".lic"))  # would replace photo.png, the original
    assert r.exit_code == 2 and "exists" in r.stderr
    assert run("encode", png, "-m", tiny, "--overwrite").exit_code == 0


def test_verbose_reports_psnr(run, png, tiny):
    r = run("encode", png, "-m", tiny, "-v", "-o", png.parent / "v.lic")
    assert "PSNR" in r.stderr


def test_stdin_stdout(run, png, tiny):
    r = run("encode", "-", "-", "-m", tiny, "-q", "1", input=png.read_bytes())
    assert r.exit_code == 0
    data = r.stdout_bytes
    assert data[:4] == b"\x89LIC"
    r = run("decode", "-", "-", input=data)
    assert r.exit_code == 0 and r.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_and_models_json(run, png, tiny):
    run("encode", png, "-m", tiny, "-q", "3")
    r = run("info", "--json", png.with_suffix(".lic"))
    d = json.loads(r.stdout)
    assert d["model"] == tiny and d["quality"] == 3.0 and d["width"] == 99 and set(d["streams"]) >= {"ans"}
    assert "weights_digest" in d and d["format_version"] == "2.0"
    r = run("models", "--json")
    m = {e["id"]: e for e in json.loads(r.stdout)["models"]}
    assert m[tiny]["quality_min"] == 1.0 and m[tiny]["quality_max"] == 3.0 and len(m[tiny]["sha256"]) == 64


@pytest.mark.parametrize("damage, code", [
    (lambda d: b"nope" + d[4:], 4),                      # magic
    (lambda d: d[:4] + b"\x07" + d[5:], 5),              # major version (checked before checksum)
    (lambda d: d[:-10], 6),                              # truncated
    (lambda d: d + b"x", 6),                             # trailing data
    (lambda d: d[:60] + bytes([d[60] ^ 1]) + d[61:], 6),  # flipped bit
])
def test_bad_files_exit_codes_and_no_partial_output(run, png, tiny, tmp_path, damage, code):
    run("encode", png, "-m", tiny)
    bad = tmp_path / "bad.lic"
    bad.write_bytes(damage(png.with_suffix(".lic").read_bytes()))
    out = tmp_path / "out.png"
    r = run("decode", bad, "-o", out)
    assert r.exit_code == code, r.output
    assert r.stderr.startswith("lic: error:") and "Traceback" not in r.output
    assert not out.exists() and not list(tmp_path.glob(".out.png*"))
    assert code in EXIT_CODES


def test_usage_errors(run, png, tiny, tmp_path):
    assert run("encode", png, "-m", tiny, "-q", "99").exit_code == 2
    assert run("encode", tmp_path / "missing.png", "-m", tiny).exit_code == 3
    notimg = tmp_path / "x.png"
    notimg.write_bytes(b"not an image")
    assert run("encode", notimg, "-m", tiny).exit_code == 3
    assert run("encode", png, "-m", "msh.unknown").exit_code == 7
    assert run("decode", tmp_path / "none.lic").exit_code == 2


def test_folders_mirror_skip_and_fail(run, tmp_path, photo, tiny):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(src / "a.png")
    Image.fromarray(photo[:40, :50]).save(src / "sub" / "b.jpg")
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "out"
    r = run("encode", src, "-o", out, "-m", tiny, "--quiet")
    assert r.exit_code == 9  # one input failed, the others were written
    assert (out / "a.lic").exists() and (out / "sub" / "b.lic").exists()
    assert not (out / "sub" / "broken.lic").exists()
    (src / "sub" / "broken.png").unlink()
    mtime = (out / "a.lic").stat().st_mtime_ns
    r = run("encode", src, "-o", out, "-m", tiny)
    assert r.exit_code == 0 and "2 skipped" in r.stderr
    assert (out / "a.lic").stat().st_mtime_ns == mtime
    (out / "sub" / "b.lic").write_bytes(b"\x89LIC partial")  # a half-written output is redone
    r = run("encode", src, "-o", out, "-m", tiny)
    assert "1 converted, 1 skipped" in r.stderr
    dec = tmp_path / "dec"
    r = run("decode", out, "-o", dec)
    assert r.exit_code == 0
    assert Image.open(dec / "sub" / "b.png").size == (50, 40)


def test_help_documents_exit_codes():
    r = CliRunner().invoke(main, ["--help"])
    assert "Exit codes" in r.output and "corrupted" in r.output
    assert CliRunner().invoke(main, ["--version"]).output.startswith("lic, version")
