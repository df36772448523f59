"""Built-in chat templates for base models whose tokenizer has none, and how a recipe's choice is applied.

``[model] chat_template`` takes a built-in name (``chatml``, ``zephyr``, ``alpaca``, ``llama3``) or
Jinja text; left out, the tokenizer's own template is used, and ``chatml`` where it has none. The
template ends up in ``tokenizer.chat_template``, so saving the tokenizer with the model (the runner
does) saves exactly the template the model was trained with.

Every built-in renders conversations prefix by prefix (rendering the first ``k`` turns gives a
prefix of rendering all of them), which :mod:`ftx.data.tokenize` relies on to find assistant turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHATML = (
    # tools (apply_chat_template(tools=...)) go at the end of the system message, calls as JSON objects, one per
    # line, after the assistant's text: the same text as ftx.data.chat's fallback for templates without tools
    "{% if tools %}{% set tool_list = 'You can call these tools. To call one, answer with a JSON object "
    "{\"name\": ..., \"arguments\": {...}}.\n' + (tools | tojson) %}"
    "{% if not messages or messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n' + tool_list + '<|im_end|>\n' }}{% endif %}{% endif %}"
    "{% for message in messages %}"
    "{% set turn = namespace(text=message['content'] or '') %}"
    "{% if loop.first and tools and message['role'] == 'system' %}"
    "{% set turn.text = (turn.text + '\n\n' + tool_list) if turn.text else tool_list %}{% endif %}"
    "{% if message['tool_calls'] is defined and message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "{% set function = call['function'] if call['function'] is defined else call %}"
    "{% set turn.text = (turn.text + '\n' if turn.text else '') + ({'name': function['name'], "
    "'arguments': function['arguments']} | tojson) %}{% endfor %}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + turn.text + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ZEPHYR = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

ALPACA = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

LLAMA3 = (
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@dataclass(frozen=True)
class BuiltinTemplate:
    """A named template, the special tokens it needs in the vocabulary, and its end-of-turn token."""

    jinja: str
    special_tokens: tuple[str, ...] = ()
    end_of_turn: str | None = None
    """``None``: turns end with the tokenizer's EOS token."""


BUILTINS: dict[str, BuiltinTemplate] = {
    "chatml": BuiltinTemplate(CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "zephyr": BuiltinTemplate(ZEPHYR),
    "alpaca": BuiltinTemplate(ALPACA),
    "llama3": BuiltinTemplate(LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
}
BUILTIN_TEMPLATES: dict[str, str] = {name: t.jinja for name, t in BUILTINS.items()}
END_OF_TURN: dict[str, str] = {name: t.end_of_turn for name, t in BUILTINS.items() if t.end_of_turn}
"""The end-of-turn token of templates that have their own (others end turns with EOS)."""


def resolve_template(value: str) -> tuple[str, str | None]:
    """Map a recipe's ``chat_template`` to Jinja text and the template's end-of-turn token, if any."""
    if value in BUILTINS:
        return BUILTINS[value].jinja, BUILTINS[value].end_of_turn
    return value, None


def apply_chat_template_choice(tokenizer: Any, value: str | None) -> Any:
    """Set the recipe's template on ``tokenizer`` (built-in name or Jinja), adding the tokens it needs.

    ``None`` keeps the tokenizer's own template, falling back to ``chatml`` where it has none.
    New special tokens grow the vocabulary; the model loader resizes the embeddings to match.
    """
    if value is None:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer
        value = "chatml"
    builtin = BUILTINS.get(value)
    if builtin is None:
        tokenizer.chat_template = value
        return tokenizer
    tokenizer.chat_template = builtin.jinja
    vocab = tokenizer.get_vocab()
    missing = [t for t in builtin.special_tokens if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer


_PROBE = "ftx-end-of-turn-probe"


def template_end_of_turn(tokenizer: Any) -> int | None:
    """The id of the special token the tokenizer's chat template writes right after an assistant message.

    Read from the template itself (a one-exchange conversation is rendered and the first special token
    after the assistant's text taken), so a model's own template, not only a built-in, says where turns end.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this has no end of turn to report
        return None
    if _PROBE not in text:
        return None
    after = text[text.rindex(_PROBE) + len(_PROBE):]
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    for token in tokenizer(after, add_special_tokens=False)["input_ids"][:2]:  # at most after a separator
        if token in special:
            return int(token)
    return None


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Ids generation stops at besides EOS: the chat template's own end-of-turn token and every built-in
    template's end-of-turn token present in ``tokenizer``."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_OF_TURN.values() if t in vocab}
    own = template_end_of_turn(tokenizer)
    if own is not None:
        ids.add(own)
    return sorted(ids)
