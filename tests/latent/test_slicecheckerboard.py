"""The entropy model of arch ``deform``: all-zero channels are flagged and not coded, the
decoder reads the flags back exactly, and a forged flag is a format error."""
import numpy as np
import pytest
import torch

from liccodec.entropy import StreamWriter, streams_of
from liccodec.errors import FormatError
from liccodec.latent.slicecheckerboard import nearest_level
from liccodec.models import get_arch
from liccodec.train.export import export_module


@pytest.fixture()
def deform(tiny_builder, tmp_path):
    """The tiny deform model exported, and an inference build that loaded it."""
    from safetensors.torch import load_file

    path = export_module(tiny_builder[0](arch="deform"), "deform", dict(get_arch("deform").tiny), "deform.tiny",
                         tmp_path)
    net = get_arch("deform").build(inference=True, **get_arch("deform").tiny)
    net.load_tensors(load_file(str(path)))
    return net.eval(), path


def _build(path, **cfg):
    from safetensors.torch import load_file

    net = get_arch("deform").build(inference=True, **{**get_arch("deform").tiny, **cfg})
    net.load_tensors(load_file(str(path)))
    return net.eval()


def test_nearest_level_is_integer_rounding_ties_up():
    assert [nearest_level(q, 3) for q in (1000, 1499, 1500, 2350, 2500, 3000, 9000, 0)] == [0, 0, 1, 1, 2, 2, 2, 0]


def test_zero_channels_are_skipped_and_decode_exactly(deform):
    """Channels made all zero are flagged: the file is shorter than the same latents coded
    without skipping, and the decoder rebuilds exactly the encoder's latents."""
    net, path = deform
    plain = _build(path, skip_zero=False)
    torch.manual_seed(0)
    with torch.no_grad():
        y = net.g_a(torch.rand(1, 3, 128, 128))
    y[:, [1, 5, 6, 10]] = 0.0          # whole channels (gained: still zero) -> symbols zero unless a mean moves them
    for q in (1000, 2350):
        streams, y_hat = net.latent.compress(y, q)
        assert torch.equal(net.latent.decompress(streams, (2, 2), q), y_hat)
        streams_plain, y_hat_plain = plain.latent.compress(y, q)
        assert torch.equal(y_hat_plain, y_hat)
        y_sym, _ = net.latent.decode_latents(streams, (2, 2), q)
        zero = int((y_sym[0].flatten(1) == 0).all(1).sum())
        assert zero > 0
        assert len(streams["ans"]) <= len(streams_plain["ans"]) + 4


def _forged(net, flags: np.ndarray, pad: int = 0) -> dict[str, bytes]:
    """A stream with z all at its tables' zero and the given flag values (z of 1x1), then
    ``pad`` random symbols (so that the coder still holds words when the flags are read)."""
    ex, lat = net.latent.exact, net.latent
    w = StreamWriter()
    w.add(ex.z_tables, np.zeros(lat.N, dtype=np.int64), np.arange(lat.N))
    w.add(ex.zero_flags, flags, nearest_level(2000, lat.levels) * lat.M + np.arange(lat.M))
    if pad:
        rng = np.random.default_rng(0)
        w.add(ex.y_tables, rng.integers(-3, 4, pad), rng.integers(0, len(ex.y_tables), pad))
    return streams_of(w)


def test_every_channel_flagged_decodes_to_zeros_without_reading_more(deform):
    net, _ = deform
    y_sym, _ = net.latent.decode_latents(_forged(net, np.ones(net.latent.M, dtype=np.int64)), (1, 1), 2000)
    assert y_sym.shape == (1, net.latent.M, 4, 4) and not y_sym.any()


def test_a_forged_flag_is_a_format_error(deform):
    """A flag is 0 or 1; an escape (any other value) is refused before y is decoded."""
    net, _ = deform
    flags = np.zeros(net.latent.M, dtype=np.int64)
    flags[3] = 7
    with pytest.raises(FormatError, match="flag"):
        net.latent.decode_latents(_forged(net, flags, pad=500), (1, 1), 2000)


def test_a_file_that_lies_about_its_size_is_refused_before_decoding(deform):
    """The z floor (docs/format.md, "Security") still bounds what a file can declare: flags
    that skip every channel do not let a short stream claim a big latent."""
    net, _ = deform
    streams = _forged(net, np.ones(net.latent.M, dtype=np.int64))
    with pytest.raises(FormatError, match="too short"):
        net.latent.decode_latents(streams, (256, 256), 2000)
