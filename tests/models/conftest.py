"""Fixtures of the model tests (plain helpers: charm_zoo.py)."""
import pytest


@pytest.fixture()
def charm_file(tiny_builder, tmp_path):
    """A tiny random charm model exported as shipped weights: what a warm start reads."""
    from liccodec.train.export import export_module

    build_tiny, cfgs = tiny_builder
    return export_module(build_tiny(arch="charm"), "charm", cfgs["charm"], "charm.tiny", tmp_path)
