"""lic bench: whole-process timing with ratios, and the in-process stage profile."""
from __future__ import annotations

from types import SimpleNamespace

from click.testing import CliRunner
from PIL import Image

from liccodec.eval.speed import Stopwatch, cli_tools, lic_command, profile_stages


def test_stopwatch_times_named_calls_once_and_restores_them():
    class Net:
        def inner(self, x):
            return x + 1

        def outer(self, x):
            return self.inner(x) * 2

    net = Net()
    sw = Stopwatch()
    with sw.patch([(Net, "inner", "inner"), (Net, "outer", "outer"), (None, "x", "skipped")]):
        assert net.outer(1) == 4
        assert net.inner(1) == 2
    assert set(sw.seconds) == {"outer", "inner"}  # inner inside outer counts in outer only
    assert "inner" in vars(Net) and Net.inner.__name__ == "inner"  # restored, not left wrapped
    obj = SimpleNamespace(f=lambda: 3)
    with sw.patch([(obj, "f", "f")]):
        obj.f()
    assert obj.f() == 3


def test_cli_tools_name_what_is_missing(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/lic" if name == "lic" else None)
    tools, missing = cli_tools(["msh.tiny"], 2.0, 2, 28, 1.5)
    assert list(tools) == ["lic msh.tiny"] and set(missing) == {"avif", "jxl"}
    enc, dec, suffix = tools["lic msh.tiny"]
    lic = lic_command()
    assert enc[:len(lic) + 1] == [*lic, "encode"] and "-q" in enc and dec[:len(lic) + 1] == [*lic, "decode"]
    assert suffix == ".lic"


def test_lic_command_is_the_script_beside_python_not_a_shim_on_path(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr("shutil.which", lambda name: "/shims/lic")  # a version manager's shim
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    monkeypatch.setattr(sys, "executable", str(python))
    assert lic_command() == [str(python), "-c", "from liccodec.cli.main import run; run()"]
    script = python.with_name("lic")
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert lic_command() == [str(script)]


def test_profile_splits_encode_and_decode_into_stages(tiny, photo, tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(photo).save(path)
    p = profile_stages(tiny, path, 2.0, repeats=1)
    for side, stage in (("encode", "analysis g_a"), ("encode", "rANS"), ("decode", "synthesis g_s"),
                        ("decode", "integer networks (h_s, slice nets)")):
        assert getattr(p, side)[stage] > 0, (side, stage)
    for side in (p.encode, p.decode):
        assert abs(sum(v for k, v in side.items() if k != "total") - side["total"]) < 1e-9
    assert set(p.startup) == {"import lic CLI", "load + verify weights, numpy decoder",
                              "build the numpy encoder on them"}  # msh: no torch in either direction


def test_bench_command_times_lic_processes(tiny, tmp_path, photo, monkeypatch):
    from liccodec.cli.main import main

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    monkeypatch.setattr("liccodec.eval.speed.shutil.which",
                        lambda name, _w=__import__("shutil").which: _w(name) if name == "lic" else None)
    report = tmp_path / "speed.md"
    res = CliRunner().invoke(main, ["bench", str(folder), "--models", tiny, "-q", "2", "--no-profile",
                                    "--report", str(report)])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "| lic msh.tiny |" in text and "avif left out" in text


def test_holdout_selects_the_photos_training_kept_out(tmp_path):
    """`lic eval --holdout K` evaluates exactly the images `holdout = K` kept out of training."""
    from liccodec.eval.bench import load_images
    from liccodec.train.data import CropSampler

    for i in range(7):
        Image.new("RGB", (8, 8), (i * 30, 0, 0)).save(tmp_path / f"{i}.png")
    held = load_images(tmp_path, holdout=3)
    assert [im.name for im in held] == ["0", "3", "6"]
    trained = CropSampler(tmp_path, 0, holdout=3).images
    assert sorted(int(a[0, 0, 0]) // 30 for a in trained) == [1, 2, 4, 5]


def test_conv_macs_counts_each_part(tiny):
    from liccodec.eval.speed import conv_macs

    m = conv_macs(tiny, side=64)
    parts = {k: v for k, v in m.items() if k != "total" and not k.startswith("params_M")}
    assert set(parts) == {"g_a", "g_s", "latent.h_a", "latent.h_s"}
    assert abs(sum(parts.values()) - m["total"]) < 0.2 and m["g_a"] == m["g_s"] > 0  # mirrored transforms
