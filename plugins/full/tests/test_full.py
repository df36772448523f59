"""The full method trains everything, or exactly what is not frozen."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ftx_full import FullOptions
from ftx_full.method import FullMethod


@pytest.fixture
def model(tiny_model_factory):
    return tiny_model_factory()


def _ctx():
    return SimpleNamespace(train=SimpleNamespace(gradient_checkpointing=False))


def test_all_parameters_train(model):
    FullMethod(FullOptions()).apply(model, _ctx())
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_layers_freezes_embeddings_and_first_layers(model):
    FullMethod(FullOptions(freeze_layers=2)).apply(model, _ctx())
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("embed_tokens" in n for n in frozen)
    assert any(".layers.1." in n for n in frozen)
    assert not any(".layers.2." in n for n in frozen)


def test_freeze_pattern_that_matches_nothing_names_the_key(model):
    from ftx.errors import RecipeError

    with pytest.raises(RecipeError, match="method.freeze"):
        FullMethod(FullOptions(freeze=["nothing.*"])).apply(model, _ctx())
