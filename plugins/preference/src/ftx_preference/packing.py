"""Padding-free forward passes for the pairwise objectives (``[data] packing = true``).

TRL's preference trainers put a batch's chosen and rejected sequences through the model as one
right-padded tensor, ``[2 x pairs, longest]``; with real preference data (long questions, answers
of any length) most of it can be padding. While :func:`packed_forward` is active, a model's
forward instead lays those sequences end to end into as few rows as fit (no row wider than the
longest sequence, the rule of ``ftx.api.PackedCollator``: on kernels that attend over a whole
row under a mask, CPU sdpa and eager, wider rows would cost more attention than they save), with
``position_ids`` restarting at 0 for each sequence and no attention mask. transformers then
builds a block-diagonal causal mask from the restarts (``masking_utils.find_packed_sequence_indices``,
for sdpa, eager and flex attention; flash-attention reads the same boundaries), so no sequence
attends to another and every position sees exactly the context it has in the padded batch.

The outputs are scattered back to the padded layout the trainer expects (zeros at padding, where
TRL's own outputs are masked away), so everything after the forward stays TRL's: losses,
reference handling, metrics. Per-sequence log-probabilities are the padded forward's up to
floating-point summation order.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ftx.api import pack_rows

FUSED_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")
"""Per-token fields of TRL's fused LM head output (``fused_lm_head=True``): one per next-token label."""


@dataclass
class PackingStats:
    """Tokens of the forwards run packed: real ones, what the padded batches held, what the packed rows held."""

    real: int = 0
    padded: int = 0
    packed: int = 0

    def figures(self) -> dict[str, float]:
        """The share of computed tokens that was padding, unpacked and packed (for ``metrics.json``)."""
        if not self.padded:
            return {}
        return {
            "pad_share_unpacked": round(1 - self.real / self.padded, 4),
            "pad_share_packed": round(1 - self.real / self.packed, 4),
        }


class PackedLayout:
    """Where each sequence of a right-padded batch ``[N, L]`` goes in the packed rows ``[K, W]``, and back.

    Sequence ``r`` (its ``n_r`` real tokens) lands in row ``row_of[r]`` at offset ``offset_of[r]``;
    a row's tokens after its last sequence are filler (label -100, positions counting from 0 as a
    sequence of their own, so nothing attends to them; their id is the batch's first token, any id
    the model knows would do).
    """

    def __init__(self, lengths: Sequence[int], padded_width: int, device: Any) -> None:
        self.lengths = [int(n) for n in lengths]
        self.padded_width = padded_width
        self.rows = pack_rows(self.lengths, max(self.lengths))
        self.width = max(sum(self.lengths[i] for i in row) for row in self.rows)
        self.row_of = [0] * len(self.lengths)
        self.offset_of = [0] * len(self.lengths)
        positions = torch.zeros((len(self.rows), self.width), dtype=torch.long)
        for k, row in enumerate(self.rows):
            at = 0
            for index in row:
                n = self.lengths[index]
                self.row_of[index], self.offset_of[index] = k, at
                positions[k, at : at + n] = torch.arange(n)
                at += n
            positions[k, at:] = torch.arange(self.width - at)
        self.device = device
        self.position_ids = positions.to(device)
        self.starts = torch.tensor([self.row_of[r] * self.width + self.offset_of[r] for r in range(len(self.lengths))
                                    if self.lengths[r]], dtype=torch.long, device=device)
        self._index: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> PackedLayout | None:
        """The layout of a right-padded batch, or ``None`` when the mask is not right padding (left-padded,
        holes) or holds a single sequence: such a batch runs as it is."""
        if attention_mask.dim() != 2 or attention_mask.size(0) < 2:
            return None
        lengths = attention_mask.sum(dim=1)
        right_padded = torch.arange(attention_mask.size(1), device=attention_mask.device)[None, :] < lengths[:, None]
        if not torch.equal(right_padded, attention_mask.bool()):
            return None
        return cls(lengths.tolist(), attention_mask.size(1), attention_mask.device)

    @property
    def computed(self) -> int:
        """Token slots the packed rows compute."""
        return len(self.rows) * self.width

    def index(self, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices of the same tokens in the padded ``[N, L - shift]`` and packed ``[K, W - shift]`` layouts.

        ``shift = 1`` for per-token outputs that score the next token: sequence ``r`` has ``n_r - 1`` of them.
        """
        if shift not in self._index:
            padded, packed = [], []
            w, pw = self.width - shift, self.padded_width - shift
            for r, n in enumerate(self.lengths):
                count = max(n - shift, 0)
                padded.append(torch.arange(count) + r * pw)
                packed.append(torch.arange(count) + self.row_of[r] * w + self.offset_of[r])
            self._index[shift] = (torch.cat(padded).to(self.device), torch.cat(packed).to(self.device))
        return self._index[shift]

    def pack(self, padded: torch.Tensor, fill: int | None = None) -> torch.Tensor:
        """``[N, L]`` (ids or labels) to ``[K, W]``, filler set to ``fill`` (default: the batch's first value)."""
        source, target = self.index(0)
        slots = len(self.rows) * self.width
        out = padded.new_full((slots,), fill) if fill is not None else padded.reshape(-1)[:1].repeat(slots)
        out[target] = padded.reshape(-1)[source]
        return out.view(len(self.rows), self.width)

    def pack_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels packed, each sequence's first one ignored: the sequence before it must not be scored on it
        (the padded batch never scores a first token either)."""
        out = self.pack(labels, -100).view(-1)
        out[self.starts] = -100
        return out.view(len(self.rows), self.width)

    def unpack(self, packed: torch.Tensor, shift: int) -> torch.Tensor:
        """``[K, W - shift, ...]`` back to ``[N, L - shift, ...]``, zero at padding; gradients flow through."""
        padded_index, packed_index = self.index(shift)
        rest = packed.shape[2:]
        flat = packed.reshape(len(self.rows) * (self.width - shift), *rest)
        out = flat.new_zeros((len(self.lengths) * (self.padded_width - shift), *rest))
        out = out.index_copy(0, padded_index, flat[packed_index])
        return out.view(len(self.lengths), self.padded_width - shift, *rest)


def _packing_forward(previous: Any, stats: PackingStats) -> Any:
    """A forward that runs a right-padded batch as packed rows, then calls ``previous`` (the model's own,
    or TRL's fused LM head) and returns its output in the padded layout."""

    @functools.wraps(previous)
    def forward(*args: Any, **kwargs: Any) -> Any:
        input_ids = args[0] if args else kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        unsupported = len(args) > 1 or any(kwargs.get(k) is not None for k in
                                           ("inputs_embeds", "position_ids", "past_key_values", "shift_labels"))
        layout = None if input_ids is None or mask is None or unsupported else PackedLayout.of(mask)
        if layout is None:
            return previous(*args, **kwargs)
        kwargs = {k: v for k, v in kwargs.items() if v is not None and k not in ("input_ids", "attention_mask")}
        if "labels" in kwargs:
            kwargs["labels"] = layout.pack_labels(kwargs["labels"])
        kwargs["use_cache"] = False  # transformers detects packed rows only without a KV cache
        out = previous(input_ids=layout.pack(input_ids), position_ids=layout.position_ids, **kwargs)
        stats.real += sum(layout.lengths)
        stats.padded += mask.numel()
        stats.packed += layout.computed
        fields, shift = (FUSED_FIELDS, 1) if kwargs.get("fused_lm_head") else (("logits",), 0)
        for name in fields:
            value = getattr(out, name, None)
            if value is not None:
                setattr(out, name, layout.unpack(value, shift))
        return out

    return forward


@contextlib.contextmanager
def packed_forward(modules: Sequence[Any], stats: PackingStats) -> Iterator[None]:
    """While active, each of ``modules`` (a causal LM, or the one under a PEFT wrapper) runs right-padded
    batches packed. Its own forward is put back on exit, so the model is unchanged outside."""
    patched: list[tuple[Any, Any]] = []
    try:
        for module in dict.fromkeys(m for m in modules if m is not None):
            own = module.__dict__.get("forward")  # TRL's fused LM head is an instance attribute
            patched.append((module, own))
            module.forward = _packing_forward(module.forward, stats)
        yield
    finally:
        for module, own in reversed(patched):
            if own is None:
                del module.forward
            else:
                module.forward = own


def causal_lm(model: Any) -> Any:
    """The causal LM whose forward TRL calls (and patches): under a PEFT wrapper, the wrapped model."""
    return model.get_base_model() if hasattr(model, "peft_config") and hasattr(model, "get_base_model") else model
