"""Built-in chat templates for base models whose tokenizer has none."""

from __future__ import annotations

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
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

BUILTIN_TEMPLATES: dict[str, str] = {"chatml": CHATML, "zephyr": ZEPHYR, "alpaca": ALPACA}
END_OF_TURN: dict[str, str] = {"chatml": "<|im_end|>"}
"""The end-of-turn token of templates that have their own (others end turns with EOS)."""


def resolve_template(value: str) -> tuple[str, str | None]:
    """Map a recipe's ``chat_template`` to Jinja text and the template's end-of-turn token, if any."""
    if value in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[value], END_OF_TURN.get(value)
    return value, None
