"""The Ray engine writes the same files as the local engine (a local Ray instance)."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from liccodec.batch import STATE_NAME
from liccodec.cli.main import main

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'liccodec[ray]')")


def _tree(folder: Path) -> dict[str, bytes]:
    # the state file records modification times: it differs between two runs by design
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STATE_NAME}


def test_ray_engine_matches_local_engine(tiny, photo, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(src / "a.png")
    Image.fromarray(photo[:40, :50]).save(src / "sub" / "c.png")
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    run = CliRunner()
    local, remote = tmp_path / "local", tmp_path / "ray"
    r = run.invoke(main, ["encode", str(src), "-o", str(local), "-m", tiny, "-q", "2.5", "--quiet"])
    assert r.exit_code == 9
    r = run.invoke(main, ["encode", str(src), "-o", str(remote), "-m", tiny, "-q", "2.5",
                          "--engine", "ray", "-j", "1"], catch_exceptions=False)
    assert r.exit_code == 9, r.stderr
    assert "1 ray worker" in r.stderr and "FAILED" in r.stderr and "broken.png" in r.stderr
    assert _tree(local) == _tree(remote) and len(_tree(local)) == 2
