"""Loss masks, token by token: only assistant turns and their end-of-turn token train.

The expected ids and labels are built independently of :mod:`ftx.data.tokenize`: the rendered
conversation is written out by hand as segments, each segment is tokenised on its own, and the
assistant segments (answer + end-of-turn token) are the trained ones.
"""

from __future__ import annotations

import pytest
from ftx_hookspecs import ChatExample, TextExample

from ftx.data.encode import tokenize_all
from ftx.data.tokenize import IGNORE_INDEX, tokenize_chat
from ftx.errors import DataError
from ftx.models.templates import BUILTINS, apply_chat_template_choice

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Sum 2 and 3"},
    {"role": "assistant", "content": "It is 5."},
]


def chatml_segments(eot: str) -> list[tuple[str, bool]]:
    return [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello!" + eot, True),
        ("\n<|im_start|>user\nSum 2 and 3<|im_end|>\n<|im_start|>assistant\n", False),
        ("It is 5." + eot, True),
        ("\n", False),
    ]


def zephyr_segments(eos: str) -> list[tuple[str, bool]]:
    return [
        (f"<|system|>\nBe brief.{eos}\n<|user|>\nHi there{eos}\n<|assistant|>\n", False),
        ("Hello!" + eos, True),
        (f"\n<|user|>\nSum 2 and 3{eos}\n<|assistant|>\n", False),
        ("It is 5." + eos, True),
        ("\n", False),
    ]


def llama3_segments() -> list[tuple[str, bool]]:
    h = "<|start_header_id|>{}<|end_header_id|>\n\n"
    return [
        (h.format("system") + "Be brief.<|eot_id|>" + h.format("user") + "Hi there<|eot_id|>" + h.format("assistant"), False),
        ("Hello!<|eot_id|>", True),
        (h.format("user") + "Sum 2 and 3<|eot_id|>" + h.format("assistant"), False),
        ("It is 5.<|eot_id|>", True),
    ]


def expected(tokenizer, segments: list[tuple[str, bool]], only_last: bool = False) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    trained_segments = [i for i, (_, t) in enumerate(segments) if t]
    for i, (text, trained) in enumerate(segments):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        train_this = trained and (not only_last or i == trained_segments[-1])
        labels.extend(piece if train_this else [IGNORE_INDEX] * len(piece))
    return ids, labels


def with_template(tokenizer, name: str):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    return apply_chat_template_choice(tok, name)


@pytest.mark.parametrize("template", ["chatml", "zephyr"])
def test_trained_positions_are_exactly_the_assistant_turns(tiny_tokenizer, template):
    tok = with_template(tiny_tokenizer, template)
    eot = tok.eos_token  # the tiny tokenizer's EOS is <|im_end|>; zephyr ends turns with EOS
    segments = chatml_segments("<|im_end|>") if template == "chatml" else zephyr_segments(eot)
    want_ids, want_labels = expected(tok, segments)
    got = tokenize_chat(tok, ChatExample(CONVERSATION))
    assert got.input_ids == want_ids
    for pos, (g, w) in enumerate(zip(got.labels, want_labels)):
        assert g == w, f"position {pos} ({tok.convert_ids_to_tokens(got.input_ids[pos])!r}): label {g}, expected {w}"
    assert len(got.labels) == len(want_labels)
    # the end-of-turn token is trained after each answer, and nothing of the prompts is
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    trained = [i for i, label in zip(got.input_ids, got.labels) if label != IGNORE_INDEX]
    assert trained.count(end_id) == 2
    assert tok.decode(trained) == "Hello!<|im_end|>It is 5.<|im_end|>"


def test_train_on_last_and_all(tiny_tokenizer):
    tok = with_template(tiny_tokenizer, "chatml")
    want_ids, want_last = expected(tok, chatml_segments("<|im_end|>"), only_last=True)
    last = tokenize_chat(tok, ChatExample(CONVERSATION), train_on="last")
    assert last.input_ids == want_ids and last.labels == want_last
    assert tok.decode([i for i, lab in zip(last.input_ids, last.labels) if lab != IGNORE_INDEX]) == "It is 5.<|im_end|>"
    everything = tokenize_chat(tok, ChatExample(CONVERSATION), train_on="all")
    assert everything.labels == everything.input_ids
    assistant = tokenize_chat(tok, ChatExample(CONVERSATION), train_on="assistant")
    assert last.trained < assistant.trained < everything.trained


def test_real_base_tokenizer_with_llama3_template(shared_data):
    """GPT-2 has no chat template: the llama3 built-in adds its header and end-of-turn tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_data / "gpt2_tokenizer")
    assert not tok.chat_template
    apply_chat_template_choice(tok, "llama3")
    assert all(t in tok.get_vocab() for t in BUILTINS["llama3"].special_tokens)
    want_ids, want_labels = expected(tok, llama3_segments())
    got = tokenize_chat(tok, ChatExample(CONVERSATION))
    assert got.input_ids == want_ids
    assert got.labels == want_labels


def test_template_that_is_not_prefix_stable_is_refused(tiny_tokenizer):
    tok = with_template(tiny_tokenizer, "chatml")
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(DataError, match="chat_template"):
        tokenize_chat(tok, ChatExample(CONVERSATION))


def test_text_trains_every_token_and_ends_with_eos(tiny_tokenizer):
    got = tokenize_all(tiny_tokenizer, [TextExample("to be or not to be")], 512)[0]
    assert got.labels == got.input_ids
    assert got.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_overlength_policies(tiny_tokenizer):
    tok = with_template(tiny_tokenizer, "chatml")
    short = ChatExample([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], meta={"source": "f.jsonl:1"})
    long = ChatExample([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 60}], meta={"source": "f.jsonl:2"})
    cut = tokenize_all(tok, [short, long], 40, "truncate")
    assert [len(t.input_ids) for t in cut][1] == 40
    dropped: dict[str, int] = {}
    kept = tokenize_all(tok, [short, long], 40, "drop", dropped=dropped)
    assert len(kept) == 1 and dropped == {"over-length": 1}
    with pytest.raises(DataError, match=r"f\.jsonl, row 2: .*over data.max_length = 40"):
        tokenize_all(tok, [short, long], 40, "error")
    with pytest.raises(DataError, match=r"f\.jsonl, row 2: .*strict"):
        tokenize_all(tok, [short, long], 40, "drop", strict=True)
    # truncating the prompt away leaves nothing to train: counted, not silently kept
    dropped = {}
    assert tokenize_all(tok, [long], 6, "truncate", dropped=dropped) == []
    assert dropped == {"nothing to train": 1}
