"""The one registry of architectures: filled by the decorator in each model module."""
import pytest

from liccodec.models import get_arch, list_archs, register_arch, unregister_arch


def test_every_architecture_has_a_tiny_test_model(tiny_builder):
    """The codec tests run once per architecture (the ``tiny_each`` fixture), with the tiny
    config its decorator declares."""
    build, cfgs = tiny_builder
    assert sorted(cfgs) == list_archs() and all(cfgs.values())
    for arch in list_archs():
        assert build(arch=arch).cfg == get_arch(arch).config(**cfgs[arch])


def test_registration_by_decorator_and_duplicates_raise():
    spec = get_arch("msh")

    @register_arch("msh-copy", config=spec.config_cls, summary="a copy", tiny=spec.tiny)
    class Copy(spec.factory):
        pass

    try:
        assert get_arch("msh-copy").factory is Copy and "msh-copy" in list_archs()
        with pytest.raises(ValueError, match="already registered"):
            register_arch("msh-copy", config=spec.config_cls, summary="again")(Copy)
    finally:
        unregister_arch("msh-copy")
    assert "msh-copy" not in list_archs()
    with pytest.raises(ValueError, match="reserved"):
        register_arch("a.b", config=spec.config_cls, summary="dotted")(Copy)
    with pytest.raises(ValueError, match="unknown"):
        register_arch("bad-tiny", config=spec.config_cls, summary="x", tiny={"width": 3})(Copy)
    assert "bad-tiny" not in list_archs()


def test_no_module_lists_the_architectures():
    """Discovery imports every module of liccodec.models; the registry names none of them."""
    import inspect

    import liccodec.models.registry as registry

    src = inspect.getsource(registry)
    assert "minnen" not in src and "import liccodec.models." not in src
