"""Folder conversion with the local engine: parallel = serial, resumable, failures contained."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from liccodec import batch
from liccodec.batch import Job, Outcome, Progress, Report
from liccodec.cli.main import main
from liccodec.errors import UsageError


def _folder(root: Path, photo: np.ndarray, broken: bool = True) -> Path:
    src = root / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(src / "a.png")
    Image.fromarray(photo[::-1]).save(src / "b.png")
    Image.fromarray(photo[:40, :50]).save(src / "sub" / "c.png")
    if broken:
        (src / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    return src


def _lic(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != batch.STATE_NAME}


def test_two_workers_write_the_same_files_and_a_summary_table(tiny, photo, tmp_path):
    src = _folder(tmp_path, photo)
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = _lic("encode", src, "-o", one, "-m", tiny, "-q", "2")
    r2 = _lic("encode", src, "-o", two, "-m", tiny, "-q", "2", "-j", "2")
    for r in (r1, r2):
        assert r.exit_code == 9  # the broken input failed, the rest were written
        assert "3 converted, 0 skipped (valid output exists), 1 failed" in r.stderr
        assert "images/s" in r.stderr and "MP/s" in r.stderr and "megapixels" in r.stderr
        assert "FAILED" in r.stderr and "broken.png" in r.stderr
    assert _tree(one) == _tree(two) and len(_tree(one)) == 3


def test_rerun_skips_valid_redoes_partial_and_cleans_stale_temp_files(tiny, photo, tmp_path):
    src = _folder(tmp_path, photo, broken=False)
    out = tmp_path / "out"
    assert _lic("encode", src, "-o", out, "-m", tiny, "--quiet").exit_code == 0
    good = (out / "a.lic").read_bytes()
    (out / "b.lic").write_bytes(good[: len(good) // 2])          # truncated output
    stale = out / "sub" / ".c.lic.abc123xy.part"                  # temp file of a killed run
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 2 * batch.STALE_PART_SECONDS,) * 2)
    fresh = out / ".a.lic.zzz999qq.part"                          # maybe another run's: kept
    fresh.write_bytes(b"busy")
    mtime = (out / "a.lic").stat().st_mtime_ns
    r = _lic("encode", src, "-o", out, "-m", tiny)
    assert r.exit_code == 0
    assert "1 converted, 2 skipped" in r.stderr and "removed 1 temp file" in r.stderr
    assert (out / "a.lic").stat().st_mtime_ns == mtime
    assert (out / "b.lic").read_bytes() != good[: len(good) // 2]
    assert not stale.exists() and fresh.exists()
    dec = tmp_path / "dec"
    assert _lic("decode", out, "-o", dec, "-j", "2", "--quiet").exit_code == 0
    assert Image.open(dec / "sub" / "c.decoded.png").size == (50, 40)


def crash_on_b(job: Job) -> Outcome:
    """A per-file function whose worker dies on one file, as on a segfault or OOM kill."""
    if job.src.name == "b.png":
        os._exit(3)
    time.sleep(0.05)
    return Outcome(job.src, job.dst, True, pixels=10)


def test_a_worker_that_dies_fails_only_its_own_file(tmp_path):
    jobs = [Job(tmp_path / f"{n}.png", tmp_path / f"{n}.lic") for n in ("a", "b", "c", "d", "e", "f")]
    # as under `lic`, which lets SIGPIPE end it quietly: a dead worker's pipe must not end the batch
    old = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        results = batch.run(jobs, crash_on_b, n_jobs=2, progress=False)
    finally:
        signal.signal(signal.SIGPIPE, old)
    by_name = {r.src.name: r for r in results}
    assert sorted(by_name) == [j.src.name for j in jobs]
    assert not by_name["b.png"].ok and "worker process died" in by_name["b.png"].error
    assert all(r.ok for n, r in by_name.items() if n != "b.png")


def test_progress_leaves_skipped_files_out_of_the_total():
    p = Progress(3, enabled=False)
    p.record(Outcome(Path("a"), Path("a.lic"), True, skipped=True))
    p.record(Outcome(Path("b"), Path("b.lic"), True, pixels=2_000_000))
    p.record(Outcome(Path("c"), Path("c.lic"), False, error="bad"))
    assert (p.bar.total, p.finished, p.skipped, p.failed) == (2, 2, 1, 1)
    rep = Report(p.results, 2.0, "local", 1)
    assert len(rep.done) == 1 and rep.skipped == 1 and len(rep.failed) == 1
    assert rep.images_per_s == 0.5 and rep.megapixels_per_s == 1.0
    p.close()


def test_unknown_engine_and_address_without_ray(tiny, photo, tmp_path):
    src = _folder(tmp_path, photo, broken=False)
    r = _lic("encode", src, "-o", tmp_path / "o", "-m", tiny, "--address", "auto")
    assert r.exit_code == 2 and "--engine ray" in r.stderr


def test_inputs_whose_names_differ_only_in_suffix_keep_it_in_the_output(tiny, photo, tmp_path):
    """Issue 19.2: a.png + a.jpg must not both become a.lic (one silently skipped)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).save(src / "a.png")
    Image.fromarray(photo[::-1]).save(src / "a.jpg")
    Image.fromarray(photo[:40, :50]).save(src / "b.png")
    Image.fromarray(photo[:50, :40]).save(src / "A.webp")    # a.lic, compared case-insensitively
    out = tmp_path / "out"
    r = _lic("encode", src, "-o", out, "-m", tiny)
    assert r.exit_code == 0 and "4 converted, 0 skipped" in r.stderr, r.output
    assert sorted(p.name for p in out.glob("*.lic")) == ["A.webp.lic", "a.jpg.lic", "a.png.lic", "b.lic"]
    dec = tmp_path / "dec"
    assert _lic("decode", out, "-o", dec, "--quiet").exit_code == 0
    assert Image.open(dec / "b.decoded.png").size == (50, 40)
    assert Image.open(dec / "A.webp.decoded.png").size == (40, 50)
    assert not np.array_equal(np.asarray(Image.open(dec / "a.png.decoded.png")),
                              np.asarray(Image.open(dec / "a.jpg.decoded.png")))


def test_names_that_still_clash_stop_the_run_before_coding(tiny, photo, tmp_path):
    """b.png + b.PNG -> b.png.lic + b.PNG.lic: one file on a case-insensitive disk."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo).save(src / "b.png")
    Image.fromarray(photo[::-1]).save(src / "b.PNG")
    Image.fromarray(photo).save(src / "c.png")
    out = tmp_path / "out"
    r = _lic("encode", src, "-o", out, "-m", tiny)
    assert r.exit_code == 2 and "b.png" in r.stderr and "b.PNG" in r.stderr and "nothing was coded" in r.stderr
    assert not out.exists() or not list(out.rglob("*.lic"))
    with pytest.raises(UsageError):   # a.png keeps its suffix and meets a.png.jpg's plain name
        batch.output_names([Path("a.png"), Path("a.png.jpg"), Path("a.jpg")], ".lic")


def test_rerun_redoes_outputs_whose_input_changed(tiny, photo, tmp_path):
    """Issue 19.3: a changed source is coded again, not "skipped (valid output exists)"."""
    src = _folder(tmp_path, photo, broken=False)
    out = tmp_path / "out"
    assert _lic("encode", src, "-o", out, "-m", tiny, "-q", "2", "--quiet").exit_code == 0
    assert (out / batch.STATE_NAME).exists()
    old_a, old_c = (out / "a.lic").read_bytes(), (out / "sub" / "c.lic").read_bytes()
    Image.fromarray(photo[:, ::-1]).save(src / "a.png")              # same size, new pixels
    os.utime(src / "a.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    r = _lic("encode", src, "-o", out, "-m", tiny, "-q", "2")
    assert r.exit_code == 0 and "1 converted, 2 skipped" in r.stderr, r.output
    assert (out / "a.lic").read_bytes() != old_a and (out / "sub" / "c.lic").read_bytes() == old_c
    r = _lic("encode", src, "-o", out, "-m", tiny, "-q", "2")        # recorded: all skipped now
    assert "0 converted, 3 skipped" in r.stderr
    (out / "sub" / "c.lic").write_bytes(old_a)                        # a valid file, but not c's
    r = _lic("encode", src, "-o", out, "-m", tiny, "-q", "2")
    assert "1 converted, 2 skipped" in r.stderr and (out / "sub" / "c.lic").read_bytes() == old_c
    dec = tmp_path / "dec"                                            # decoding records too
    assert _lic("decode", out, "-o", dec, "--quiet").exit_code == 0
    (out / "b.lic").write_bytes((out / "a.lic").read_bytes())
    r = _lic("decode", out, "-o", dec)
    assert "1 converted, 2 skipped" in r.stderr


def test_an_unwritable_output_folder_stops_the_run_before_coding(tiny, photo, tmp_path):
    """Issue 19.4: not an "internal error" naming a temp file after the whole batch."""
    src = _folder(tmp_path, photo, broken=False)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    r = _lic("encode", src, "-o", blocker / "out", "-m", tiny)
    assert r.exit_code == 2 and str(blocker) in r.stderr and ".part" not in r.stderr, r.output
    assert "converted" not in r.stderr


def _blas_threads(_job):
    from liccodec.runtime import blas

    return blas.get_threads()


def test_each_worker_gets_its_share_of_the_cores_in_numpy_blas_too():
    from liccodec.runtime import blas

    if blas.info() is None:
        pytest.skip("numpy does not link OpenBLAS here")
    share = max(1, (os.cpu_count() or 1) // 2)
    with batch._pool(2, _blas_threads) as pool:
        assert set(pool.map(batch._run_in_worker, [None, None])) == {share}


def test_set_threads_reaches_a_blas_loaded_before_it(monkeypatch):
    from liccodec.runtime import blas

    if blas.info() is None:
        pytest.skip("numpy does not link OpenBLAS here")
    old = blas.get_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "9")  # restored after the test
    monkeypatch.setenv("MKL_NUM_THREADS", "9")
    try:
        batch.set_threads(1)
        assert blas.get_threads() == 1
    finally:
        blas.set_threads(old)


@pytest.mark.parametrize("fmt,name", [(None, "out.png"), ("png", "out.bin"), ("PNG", "-")])
def test_decoded_pngs_use_the_faster_zlib_level(fmt, name):
    from io import BytesIO

    from liccodec.batch.workers import PNG_COMPRESS_LEVEL, image_bytes

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    ref = BytesIO()
    img.save(ref, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    assert image_bytes(img, fmt, name) == ref.getvalue()
    assert np.array_equal(np.asarray(Image.open(BytesIO(image_bytes(img, fmt, name)))), np.asarray(img))
