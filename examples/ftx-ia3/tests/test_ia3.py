"""The ia3 method, tested with ftx's own fixtures (``ftx.testing``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ftx.errors import RecipeError
from ftx_ia3 import IA3Options
from ftx_ia3.method import IA3Method
from pydantic import ValidationError

CTX = SimpleNamespace(train=SimpleNamespace(gradient_checkpointing=False))


def test_registered_from_this_distribution(plugin_manager):
    assert plugin_manager.registry.get("method", "ia3").provenance.distribution == "ftx-ia3"


def test_feedforward_modules_must_be_targets():
    with pytest.raises(ValidationError, match="feedforward_modules"):
        IA3Options(target_modules=["k_proj"], feedforward_modules=["down_proj"])


def test_only_the_ia3_vectors_train(tiny_model_factory):
    model = IA3Method(IA3Options()).apply(tiny_model_factory(), CTX)
    trainable = {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("ia3_l" in name for name in trainable)
    config = model.get_base_model().config
    kv = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    # one vector per layer on the outputs of k_proj and v_proj, and on the input of down_proj
    assert sum(trainable.values()) == config.num_hidden_layers * (2 * kv + config.intermediate_size)


def test_a_missing_target_names_the_key(tiny_model_factory):
    with pytest.raises(RecipeError, match="method.target_modules"):
        IA3Method(IA3Options(target_modules=["query_key_value"], feedforward_modules=[])).apply(tiny_model_factory(), CTX)
