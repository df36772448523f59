"""The export smoke test tells a model that cannot end its turn from a sound model with a long answer.

The tiny built-in model supplies the tokenizer (chatml, ``<|im_end|>`` is id 4), the config and the
context; its greedy replies are scripted, so each case is exactly the reply it names.
"""

from __future__ import annotations

import random

import pytest

END_OF_TURN = 4
PROMPT = [[{"role": "user", "content": "Write a long story."}]]


class ScriptedModel:
    """The tiny model's config and weights, but ``generate`` returns scripted replies (one per prompt)."""

    def __init__(self, model, replies):
        self.model = model
        self.config = model.config
        self.replies = replies

    def parameters(self):
        return self.model.parameters()

    def generate(self, input_ids, attention_mask=None, *, max_new_tokens, eos_token_id, pad_token_id, **_):
        import torch

        rows = []
        for reply in self.replies[: len(input_ids)]:
            new = list(reply)[:max_new_tokens]
            cut = next((i for i, t in enumerate(new) if t in eos_token_id), None)
            rows.append(new if cut is None else new[: cut + 1])
        width = max(len(r) for r in rows)
        padded = [r + [pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(padded, dtype=input_ids.dtype)], dim=1)


def plain_tokens(tokenizer, count, seed=0):
    """``count`` ids of ordinary (non-special) tokens in random order: text that does not repeat itself."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    ordinary = [i for i in range(len(tokenizer)) if i not in special]
    rng = random.Random(seed)
    return [rng.choice(ordinary) for _ in range(count)]


@pytest.fixture
def tiny(tiny_model_factory, tiny_tokenizer):
    return tiny_model_factory(), tiny_tokenizer


def _smoke(model, tokenizer, cap, how="--smoke-max-tokens", eos=(2, END_OF_TURN)):
    from ftx_deploy.smoke import check_smoke, context_room, run_smoke_test

    room = context_room(model, tokenizer, PROMPT)
    report = run_smoke_test(model, tokenizer, PROMPT, eos_ids=list(eos), max_new_tokens=cap, cap_source=how, room=room)
    check_smoke(report, tokenizer)
    return report


def test_the_default_cap_comes_from_the_trained_answers_and_the_context(tiny):
    from ftx_deploy.smoke import MIN_CAP, context_room, default_cap

    model, tokenizer = tiny
    assert default_cap(tokenizer, []) == (MIN_CAP, f"{MIN_CAP} without the run's answers")
    assert default_cap(tokenizer, ["a b c"])[0] == MIN_CAP  # short answers: still room for a long reply
    long_answer = " ".join(["word"] * 200)
    tokens = len(tokenizer(long_answer, add_special_tokens=False)["input_ids"])
    cap, how = default_cap(tokenizer, ["a b", long_answer])
    assert cap == 2 * tokens and f"2 x the longest trained answer ({tokens} tokens)" in how
    room = context_room(model, tokenizer, PROMPT)
    assert room is not None and 0 < room < model.config.max_position_embeddings
    cap, how = default_cap(tokenizer, [" ".join(["word"] * 400)], room)
    assert cap == room and f"cut to the {room} tokens the context leaves" in how


def test_a_sound_long_reply_passes_under_the_default_cap_and_the_report_says_where_it_stopped(tiny):
    from ftx_deploy.smoke import default_cap

    model, tokenizer = tiny
    reply = plain_tokens(tokenizer, 300) + [END_OF_TURN]
    scripted = ScriptedModel(model, [reply])
    answers = [" ".join(["word"] * 160)]  # the run trained on answers this long
    cap, how = default_cap(tokenizer, answers)
    report = _smoke(scripted, tokenizer, cap, how)
    assert report.generations[0].stopped_at == END_OF_TURN and len(report.generations[0].token_ids) == 300
    assert report.summary().startswith("1 of 1 greedy replies (eval split) stopped at an EOS id, after 300 tokens")
    assert report.as_dict()["stopped"] == 1 and report.as_dict()["generations"][0]["tokens"] == 300


def test_a_long_reply_over_a_short_cap_is_told_to_raise_the_cap_before_the_template_is_blamed(tiny):
    from ftx_deploy.smoke import SmokeTestFailed

    model, tokenizer = tiny
    scripted = ScriptedModel(model, [plain_tokens(tokenizer, 300) + [END_OF_TURN]])
    with pytest.raises(SmokeTestFailed) as caught:
        _smoke(scripted, tokenizer, 64)
    message = str(caught.value)
    assert "1 of 1 greedy replies did not stop at an EOS id within 64 new tokens (the cap: --smoke-max-tokens)" in message
    assert "replies that stopped: 0" in message
    advice = message.index("raise the cap with --smoke-max-tokens")
    assert "may be a sound long answer" in message and advice < message.index("template mismatch")


def test_a_model_that_never_ends_its_turn_is_still_refused_and_blamed(tiny):
    from ftx_deploy.smoke import SmokeTestFailed, context_room, default_cap

    model, tokenizer = tiny
    loop = plain_tokens(tokenizer, 20) * 40  # goes round in circles and never emits <|im_end|>
    with pytest.raises(SmokeTestFailed) as caught:
        _smoke(ScriptedModel(model, [loop]), tokenizer, *default_cap(tokenizer, ["a b c"]))
    message = str(caught.value)
    assert "within 256 new tokens" in message and "reached the 256-token cap repeating itself" in message
    assert "never produced '<|im_end|>' (id 4)" in message and "template mismatch" in message
    assert "raise the cap" not in message

    room = context_room(model, tokenizer, PROMPT)  # a reply that runs on through all the room the context leaves
    endless = ScriptedModel(model, [plain_tokens(tokenizer, room + 50, seed=1)])
    with pytest.raises(SmokeTestFailed) as caught:
        _smoke(endless, tokenizer, *default_cap(tokenizer, [" ".join(["word"] * 400)], room))
    assert f"filled the {room} tokens the context leaves" in str(caught.value)
    assert "raise the cap" not in str(caught.value)


def test_a_model_that_ends_with_the_wrong_token_is_refused(tiny):
    from ftx_deploy.smoke import SmokeTestFailed

    model, tokenizer = tiny
    scripted = ScriptedModel(model, [plain_tokens(tokenizer, 10) + [END_OF_TURN] + plain_tokens(tokenizer, 300)])
    with pytest.raises(SmokeTestFailed) as caught:
        _smoke(scripted, tokenizer, 256, eos=(2,))
    assert "EOS mismatch: the model ended its turn with '<|im_end|>' (id 4)" in str(caught.value)
