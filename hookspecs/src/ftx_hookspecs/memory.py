"""Memory planning (hookspecs 1.2): how a component tells ``ftx plan`` what training will hold.

``ftx plan`` estimates a run's peak memory from the model's config alone. It starts from full
fine-tuning of a :class:`ModelShape` and folds in the recipe's components: the method, then each
kernel, then the objective. A component takes part by giving its **options model** a
``memory_plan(shape, plan) -> MemoryPlan`` method (the :class:`MemoryPlanner` Protocol) that
returns an updated copy of the plan (``dataclasses.replace``). It lives on the options, not on
the built component, because a plan is made before the run and often on another machine: building
a component may need its device or library (a CUDA-only kernel refuses to build without a GPU),
while a plan is arithmetic. A component without it is planned as if it changed nothing, with a
note saying so. Pure Python: importing this module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per element of the dtypes a plan knows; any other counts as float32."""

ATTENTION_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj")


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of ``dtype`` (``"float32"``, ``"bfloat16"``, ``"float16"``; else 4)."""
    return DTYPE_BYTES.get(dtype, 4)


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that decide its memory (read from its ``config.json``).

    Parameters are named as in Llama (``model.layers.<i>.self_attn.q_proj.weight``, ...), whatever
    the architecture, so name patterns in options can be matched against :meth:`named_parameters`.
    """

    model_type: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    gated: bool
    experts: int = 1

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """``(name, fan_in, fan_out)`` of the linear layers of one block, named as in Llama."""
        h, i = self.hidden, self.intermediate
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        layers = [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h)]
        if self.gated:
            layers += [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]
        else:
            layers += [("up_proj", h, i), ("down_proj", i, h)]
        return layers

    def module_name(self, layer: str, index: int = 0) -> str:
        """The full module name of linear ``layer`` in block ``index``, e.g. ``model.layers.0.mlp.up_proj``."""
        return f"model.layers.{index}.{'self_attn' if layer in ATTENTION_LINEAR else 'mlp'}.{layer}"

    def linear_params(self) -> int:
        """Parameters in the blocks' linear layers (what 4-bit quantisation and adapters act on)."""
        per_block = 0
        for name, fan_in, fan_out in self.linear_layers():
            per_block += fan_in * fan_out * (self.experts if name in ("gate_proj", "up_proj", "down_proj") else 1)
        return per_block * self.layers

    def other_params(self) -> int:
        """Embeddings, the output head (unless tied) and norms."""
        head = 0 if self.tied else self.vocab * self.hidden
        return self.vocab * self.hidden + head + self.layers * 2 * self.hidden + self.hidden

    def total_params(self) -> int:
        """Every parameter of the model."""
        return self.linear_params() + self.other_params()

    def named_parameters(self) -> list[tuple[str, int]]:
        """``(name, count)`` of every parameter tensor, with Llama's names; sums to :meth:`total_params`."""
        out = [("model.embed_tokens.weight", self.vocab * self.hidden)]
        for index in range(self.layers):
            for name, fan_in, fan_out in self.linear_layers():
                experts = self.experts if name in ("gate_proj", "up_proj", "down_proj") else 1
                out.append((f"{self.module_name(name, index)}.weight", fan_in * fan_out * experts))
            out.append((f"model.layers.{index}.input_layernorm.weight", self.hidden))
            out.append((f"model.layers.{index}.post_attention_layernorm.weight", self.hidden))
        out.append(("model.norm.weight", self.hidden))
        if not self.tied:
            out.append(("lm_head.weight", self.vocab * self.hidden))
        return out


@dataclass(frozen=True)
class MemoryPlan:
    """What training will hold at its peak, as the recipe's components describe it.

    The planner fills the first six fields from the recipe and starts with full fine-tuning in
    ``dtype``; each component returns a copy with what it changes. The planner then counts
    gradients and two AdamW moments for ``trainable_params`` at ``trainable_bytes`` each, the
    activations of ``batch_size x sequences_per_example x max_length`` tokens, and the weights.
    """

    device: str
    """``"cpu"`` or ``"cuda"``: the device the run would use."""
    dtype: str
    """Dtype of the frozen weights and of the activations (``"float32"``, ``"bfloat16"``, ...)."""
    batch_size: int
    max_length: int
    gradient_checkpointing: bool
    optimizer: str
    """``[train] optimizer``; a name with ``8bit`` keeps 1-byte moments."""
    total_params: int
    """Every parameter the trained model holds (the base plus what the method adds)."""
    trainable_params: int
    """Parameters with gradients and optimizer state."""
    weight_bytes: int
    """Bytes of all the model's weights as loaded and wrapped (a 4-bit base is smaller)."""
    trainable_bytes: int
    """Bytes per trainable parameter, for gradients and optimizer moments (adapters in float32: 4)."""
    adapters: bool = False
    """The base weights stay as loaded and only added parameters train: switching those off gives the base back."""
    extra_weight_bytes: int = 0
    """Frozen copies held besides the trained model (e.g. a reference model for a preference objective)."""
    sequences_per_example: int = 1
    """Sequences each example puts through the model per step (2 for chosen + rejected in one pass)."""
    chunked_loss: bool = False
    """The loss is computed from hidden states in chunks, so the full logits are never held."""
    details: tuple[str, ...] = ()
    """Short words for the report's parameter line, e.g. ``("adapters", "4-bit base")``."""
    notes: tuple[str, ...] = ()
    """Sentences on what the estimate assumes, printed under the plan."""


@runtime_checkable
class MemoryPlanner(Protocol):
    """Optional (hookspecs 1.2): a component's options model that tells ``ftx plan`` its effect on memory."""

    def memory_plan(self, shape: ModelShape, plan: MemoryPlan) -> MemoryPlan:
        """Return ``plan`` updated with what this component, with these options, changes (pure arithmetic)."""
