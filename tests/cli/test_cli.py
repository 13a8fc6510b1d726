"""The lic command line: outputs, summaries and documented exit codes."""
import json
import os
import shutil
import stat
import subprocess

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
def read_only_dir(tmp_path):
    """A folder this process cannot write to: chmod for a normal user, `chattr +i` for root."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no folder is unwritable")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=False)


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
    assert run("decode", png.with_suffix(".lic")).exit_code == 0
    r = run("decode", png.with_suffix(".lic"))  # photo.decoded.png is there now
    assert r.exit_code == 2 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert run("encode", png, "-m", tiny, "--overwrite").exit_code == 0


def test_decode_default_name_never_replaces_the_original(run, png, tiny):
    """Issue 19.6: photo.png -> photo.lic -> photo.decoded.png, never photo.png again."""
    original = png.read_bytes()
    assert run("encode", png, "-m", tiny).exit_code == 0
    r = run("decode", png.with_suffix(".lic"))
    assert r.exit_code == 0, r.output
    assert png.read_bytes() == original
    assert Image.open(png.parent / "photo.decoded.png").size == (99, 70)
    assert run("decode", png.with_suffix(".lic"), "--format", "webp").exit_code == 0
    assert (png.parent / "photo.decoded.webp").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask_and_keep_a_replaced_files_mode(run, png, tiny, tmp_path, umask, mode):
    """Issue 19.5: not 0600 whatever the umask; cp/cjxl keep the mode of a file they overwrite."""
    old = os.umask(umask)
    try:
        assert run("encode", png, "-m", tiny).exit_code == 0
        assert run("decode", png.with_suffix(".lic"), "-o", tmp_path / "d.png").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(png.with_suffix(".lic").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "d.png").stat().st_mode) == mode
    os.chmod(png.with_suffix(".lic"), 0o640)
    assert run("encode", png, "-m", tiny, "--overwrite").exit_code == 0
    assert stat.S_IMODE(png.with_suffix(".lic").stat().st_mode) == 0o640


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "fifo", "folder"])
def test_overwrite_refuses_targets_that_are_not_regular_files(run, png, tiny, tmp_path, kind):
    """Issue 19.5: --overwrite onto a symlink, FIFO (or device, folder) must not replace it."""
    target = tmp_path / "target.lic"
    out = tmp_path / "out.lic"
    if kind == "symlink":
        target.write_bytes(b"keep")
        out.symlink_to(target)
    elif kind == "dangling symlink":
        out.symlink_to(tmp_path / "nowhere.lic")
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        out.mkdir()
    before = os.lstat(out)
    for extra in ((), ("--overwrite",)):
        r = run("encode", png, "-m", tiny, "-o", out, *extra)
        assert r.exit_code == 2, r.output
        assert str(out) in r.stderr and ("not a regular file" in r.stderr or "exists" in r.stderr)
    after = os.lstat(out)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    if kind == "symlink":
        assert target.read_bytes() == b"keep"
    assert not list(tmp_path.glob(".out.lic*"))


def _refuse_coding(monkeypatch):
    import liccodec.codec

    def boom(*a, **k):
        raise AssertionError("coded before checking the output")
    monkeypatch.setattr(liccodec.codec, "encode_planes", boom)


def test_unwritable_output_fails_before_coding_and_names_the_real_path(run, png, tiny, tmp_path, monkeypatch):
    """Issue 19.4 (second half): exit 2 before any coding, naming OUT, never the temp file."""
    _refuse_coding(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    out = blocker / "sub" / "out.lic"            # a folder that cannot be made: a file is in the way
    r = run("encode", png, "-m", tiny, "-o", out)
    assert r.exit_code == 2, r.output
    assert str(out) in r.stderr and ".part" not in r.stderr


def test_read_only_output_folder_fails_before_coding(run, png, tiny, read_only_dir, monkeypatch):
    _refuse_coding(monkeypatch)
    out = read_only_dir / "out.lic"
    r = run("encode", png, "-m", tiny, "-o", out)
    assert r.exit_code == 2, r.output
    assert f"cannot write {out}" in r.stderr and ".part" not in r.stderr
    r = run("encode", png.parent, "-o", read_only_dir / "coded", "-m", tiny, "--quiet")  # a folder too
    assert r.exit_code == 2 and str(read_only_dir) in r.stderr, r.output


def test_image_over_the_pixel_limit_is_refused_with_our_own_error(run, png, tiny, tmp_path, monkeypatch):
    """Issue 19.7: a checked maximum (LICCODEC_MAX_PIXELS), before the pixels are decoded."""
    monkeypatch.setenv("LICCODEC_MAX_PIXELS", "5000")   # the photo has 99 x 70 = 6930
    r = run("encode", png, "-m", tiny, "-o", tmp_path / "x.lic")
    assert r.exit_code == 3 and "LICCODEC_MAX_PIXELS" in r.stderr and "99x70" in r.stderr, r.output
    monkeypatch.setenv("LICCODEC_MAX_PIXELS", "7000")
    assert run("encode", png, "-m", tiny, "-o", tmp_path / "x.lic").exit_code == 0
    monkeypatch.setenv("LICCODEC_MAX_PIXELS", "5000")   # decoding is bounded the same way
    r = run("decode", tmp_path / "x.lic", "-o", tmp_path / "x.png")
    assert r.exit_code == 2 and "LICCODEC_MAX_PIXELS" in r.stderr and not (tmp_path / "x.png").exists()


def test_multi_frame_inputs_are_refused_unless_first_frame(run, photo, tiny, tmp_path):
    """Issue 19.9: an animated GIF is not silently cut to its first frame."""
    gif = tmp_path / "anim.gif"
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1]), Image.fromarray(photo[:, ::-1])]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    r = run("encode", gif, "-m", tiny)
    assert r.exit_code == 3 and "3 frames" in r.stderr and "--first-frame" in r.stderr, r.output
    assert not gif.with_suffix(".lic").exists()
    assert run("encode", gif, "-m", tiny, "--first-frame").exit_code == 0
    folder = tmp_path / "in"                       # a multi-page TIFF in a folder
    folder.mkdir()
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    r = run("encode", folder, "-o", tmp_path / "coded", "-m", tiny, "--quiet")
    assert r.exit_code == 9 and "3 frames" in r.stderr
    assert not (tmp_path / "coded" / "pages.lic").exists()
    r = run("encode", folder, "-o", tmp_path / "coded", "-m", tiny, "--quiet", "--first-frame")
    assert r.exit_code == 0 and (tmp_path / "coded" / "pages.lic").exists()


def test_demo_keeps_an_earlier_demo_unless_overwrite(run, tiny, tmp_path):
    """Issue 19.12: `lic demo` does not replace lic-demo/ silently."""
    out = tmp_path / "demo"
    assert run("demo", "-m", tiny, "-o", out).exit_code == 0
    first = (out / "chelsea.lic").read_bytes()
    (out / "chelsea.decoded.png").write_bytes(b"mine")
    r = run("demo", "-m", tiny, "-o", out, "-q", "1")
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    assert (out / "chelsea.decoded.png").read_bytes() == b"mine" and (out / "chelsea.lic").read_bytes() == first
    assert run("demo", "-m", tiny, "-o", out, "-q", "1", "--overwrite").exit_code == 0
    assert (out / "chelsea.lic").read_bytes() != first


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
    assert Image.open(dec / "sub" / "b.decoded.png").size == (50, 40)


def test_help_documents_exit_codes():
    r = CliRunner().invoke(main, ["--help"])
    assert "Exit codes" in r.output and "corrupted" in r.output
    assert CliRunner().invoke(main, ["--version"]).output.startswith("lic, version")
