"""The one registry of architectures."""
from liccodec.models import list_archs


def test_every_architecture_has_a_tiny_test_model(tiny_builder):
    """The codec tests run once per architecture (the ``tiny_each`` fixture)."""
    assert sorted(tiny_builder[1]) == list_archs()
