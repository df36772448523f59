"""An Ollama ``Modelfile`` for an exported GGUF file: the chat template in Ollama's Go syntax and the stop token.

Ollama renders prompts with Go templates, not Jinja, so the model's template is recognised by its
turn markers (ChatML's ``<|im_start|>``, Llama 3's ``<|start_header_id|>``) and written in Go syntax;
a default system message the Jinja template inserts becomes ``SYSTEM``. For other templates the
Modelfile omits ``TEMPLATE`` and says so: Ollama then falls back to the template stored in the GGUF.
"""

from __future__ import annotations

from typing import Any

CHATML = (
    '{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
    '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
    '<|im_start|>assistant\n'
)
LLAMA3 = (
    '<|begin_of_text|>{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}'
    '{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}'
    '<|start_header_id|>assistant<|end_header_id|>\n\n'
)
_PROBE = "ftx-probe-user-message"


def template_family(chat_template: str | None) -> str | None:
    """``"chatml"``, ``"llama3"`` or ``None`` (a template this module has no Go form of)."""
    if not chat_template:
        return None
    if "<|im_start|>" in chat_template and "<|im_end|>" in chat_template:
        return "chatml"
    if "<|start_header_id|>" in chat_template and "<|eot_id|>" in chat_template:
        return "llama3"
    return None


def default_system(tokenizer: Any, family: str | None) -> str | None:
    """The system message the template adds to a conversation that has none (SmolLM2's "You are a helpful ...")."""
    if family is None:
        return None
    text = tokenizer.apply_chat_template([{"role": "user", "content": _PROBE}], tokenize=False)
    head, end = (("<|im_start|>system\n", "<|im_end|>") if family == "chatml"
                 else ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"))
    before = text.split(_PROBE, 1)[0]
    if head not in before:
        return None
    return before.split(head, 1)[1].split(end, 1)[0] or None


def _quoted(text: str) -> str:
    return '"""' + text.replace('"""', '\\"\\"\\"') + '"""'


def modelfile(gguf_name: str, tokenizer: Any, stop_tokens: list[str]) -> str:
    """The Modelfile text for ``gguf_name`` (a file in the same folder)."""
    family = template_family(getattr(tokenizer, "chat_template", None))
    lines = ["# Written by ftx export --format gguf. Use: ollama create NAME -f Modelfile && ollama run NAME",
             f"FROM ./{gguf_name}"]
    if family is None:
        lines.append("# The chat template has no Go form here: Ollama uses the template stored in the GGUF file.")
    else:
        lines.append(f"TEMPLATE {_quoted(CHATML if family == 'chatml' else LLAMA3)}")
        system = default_system(tokenizer, family)
        if system:
            lines.append(f"SYSTEM {_quoted(system)}")
    for token in stop_tokens:
        lines.append(f'PARAMETER stop "{token}"')
    return "\n".join(lines) + "\n"
