"""Preparation that scales: batched tokenisation equals the exact path, examples stream to disk past a threshold,
the split needs only fingerprints, token arrays round-trip through the cache, and lists or globs of files work."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ftx_hookspecs import ChatExample, TextExample

import ftx.data.cache as cache_module
import ftx.data.encode as encode_module
import ftx.data.prepare as prepare_module
from ftx.data.cache import examples_digest, tokenize_cached
from ftx.data.layout import layout_for
from ftx.data.prepare import example_key, held_out_indices, split_held_out
from ftx.data.store import StoredExamples, TokenizedSplit
from ftx.data.encode import tokenize_all
from ftx.data.tokenize import tokenize_all_exact
from ftx.models.templates import BUILTINS, apply_chat_template_choice
from tests.test_data_formats import prepare


def _rows(path: Path, n: int, start: int = 0) -> Path:
    rows = [{"instruction": f"Say {i} twice.", "input": "" if i % 3 else f"context {i}", "output": f"{i} {i}"}
            for i in range(start, start + n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path, monkeypatch, ftx_home):
    monkeypatch.setenv("FTX_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _pairs(items):
    return [(list(t.input_ids), list(t.labels)) for t in items]


@pytest.mark.parametrize("template", sorted(BUILTINS))
def test_batched_tokenisation_equals_the_exact_path(template, shared_data, plugin_manager, tiny_tokenizer):
    tok = apply_chat_template_choice(type(tiny_tokenizer).from_pretrained(tiny_tokenizer.name_or_path), template)
    chats = prepare(plugin_manager, {"format": "sharegpt", "eval": None,
                                     "train": str(shared_data / "fastchat_dummy_conversation.json")}).train[:16]
    alpaca = prepare(plugin_manager, {"format": "alpaca", "eval": None, "train": str(shared_data / "alpaca_tiny.json")}).train[:16]
    examples = [*chats, *alpaca, TextExample("plain text, every token trains"), TextExample("")]
    for max_length, overlength in ((4096, "truncate"), (48, "truncate"), (48, "drop"), (96, "drop-oldest-turns")):
        for train_on in ("assistant", "last", "all"):
            fast_drops, exact_drops, fast_first, exact_first = {}, {}, {}, {}
            fast = tokenize_all(tok, examples, max_length, overlength, train_on, fast_drops, first_bad=fast_first)
            exact = tokenize_all_exact(tok, examples, max_length, overlength, train_on, exact_drops, first_bad=exact_first)
            assert _pairs(fast) == _pairs(exact), (max_length, overlength, train_on)
            assert (fast_drops, fast_first) == (exact_drops, exact_first)
    assert layout_for(tok).spans(alpaca[0], "assistant") is not None  # the built-ins take the fast path


def test_real_bpe_tokenizer_takes_the_fast_path_with_the_same_ids(shared_data, plugin_manager):
    from transformers import AutoTokenizer

    tok = apply_chat_template_choice(AutoTokenizer.from_pretrained(shared_data / "gpt2_tokenizer"), "chatml")
    examples = prepare(plugin_manager, {"format": "alpaca", "eval": None, "train": str(shared_data / "alpaca_tiny.json")}).train
    assert layout_for(tok).spans(examples[0], "assistant") is not None
    assert _pairs(tokenize_all(tok, examples, 512)) == _pairs(tokenize_all_exact(tok, examples, 512))


@pytest.mark.parametrize("template", [
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim }}</s>\n{% endfor %}",
    "{% for m in messages %}<{{ m['role'] }}>{% if 'x' in m['content'] %}!{% endif %}{{ m['content'] }}</s>\n{% endfor %}",
    "{% for m in messages %}{{ ('<' + m['role'] + '>' + m['content']) | trim }}\n{% endfor %}",
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | tojson }}\n{% endfor %}",
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'][:3] }}{{ m['content'] }}\n{% endfor %}",
])
def test_templates_that_read_contents_take_the_exact_path(template, tiny_tokenizer):
    tok = type(tiny_tokenizer).from_pretrained(tiny_tokenizer.name_or_path)
    tok.chat_template = template
    example = ChatExample([{"role": "user", "content": " x y \n"}, {"role": "assistant", "content": "z\t "}])
    assert layout_for(tok).spans(example, "assistant") is None
    assert _pairs(tokenize_all(tok, [example], 512)) == _pairs(tokenize_all_exact(tok, [example], 512))


def _old_split(train, fraction, seed):
    """The list-based split as it was, to check the fingerprint split against."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(train) * fraction))
    keys = [example_key(e) for e in train]
    held, rest = order[:n_eval], order[n_eval:]
    trained_keys = {keys[i] for i in rest}
    twins = [i for i in held if keys[i] in trained_keys]
    if twins:
        counts = Counter(keys)
        unique = [j for j in rest if counts[keys[j]] == 1][: len(twins)]
        held = [i for i in held if keys[i] not in trained_keys] + unique + twins[len(unique):]
    chosen = set(held)
    kept_keys = {keys[i] for i in range(len(train)) if i not in chosen}
    return sorted(set(range(len(train))) - chosen), sorted(chosen), sum(1 for i in chosen if keys[i] in kept_keys)


def test_fingerprint_split_is_the_list_split():
    rng = random.Random(3)
    for trial in range(30):
        n = rng.randint(2, 80)
        examples = [ChatExample([{"role": "user", "content": f"q{rng.randint(0, n // 2)}"},
                                 {"role": "assistant", "content": "a"}]) for _ in range(n)]
        fraction, seed = rng.choice([0.1, 0.25, 0.5]), rng.randint(0, 99)
        if max(1, round(n * fraction)) >= n:
            continue
        kept, held, leaked = _old_split(examples, fraction, seed)
        keys = np.frombuffer(b"".join(prepare_module.fingerprint(e)[0] for e in examples), dtype=np.uint64)
        new_kept, new_held, new_leaked = held_out_indices(keys, fraction, seed)
        assert (new_kept.tolist(), new_held.tolist(), new_leaked) == (kept, held, leaked), trial
        train, evals, _ = split_held_out(examples, fraction, seed)
        assert [id(e) for e in evals] == [id(examples[i]) for i in held]


def test_examples_past_the_threshold_stream_to_disk_with_the_same_result(tmp_path, home, monkeypatch, plugin_manager,
                                                                         tiny_tokenizer):
    path = _rows(tmp_path / "rows.jsonl", 300)
    table = {"format": "alpaca", "train": str(path), "eval": 0.2, "cache": False}
    in_memory = prepare(plugin_manager, table, seed=5)
    monkeypatch.setattr(prepare_module, "SPILL_AT", 50)
    streamed = prepare(plugin_manager, table, seed=5)
    assert isinstance(streamed.train, StoredExamples) and isinstance(streamed.eval, StoredExamples)
    assert list(streamed.train) == in_memory.train and list(streamed.eval) == in_memory.eval
    assert streamed.train[7] == in_memory.train[7] and streamed.train[-3:] == in_memory.train[-3:]
    assert streamed.report.as_dict() == in_memory.report.as_dict()
    digests = streamed.current_digests()
    assert digests == in_memory.current_digests()
    assert digests == {"train": examples_digest(in_memory.train), "eval": examples_digest(in_memory.eval)}
    in_memory.train = in_memory.train[:-1]
    assert in_memory.current_digests() is None  # a changed split is digested again, never keyed by a stale digest
    in_memory.train = list(streamed.train)
    monkeypatch.setattr(cache_module, "IN_MEMORY_TOKENS", 0)  # the tokens are read back from the files
    a = tokenize_cached(tiny_tokenizer, in_memory.train, in_memory.eval, max_length=64)
    b = tokenize_cached(tiny_tokenizer, streamed.train, streamed.eval, max_length=64)
    assert b.hit and a.key == b.key  # the stored digests give the same content-addressed key
    assert isinstance(b.train, TokenizedSplit) and b.train.folder is not None
    exact = tokenize_all_exact(tiny_tokenizer, in_memory.train, 64)
    assert _pairs(a.train) == _pairs(b.train) == _pairs(exact)
    features = b.train.features()
    assert len(features) == len(exact)
    assert features[3]["input_ids"].dtype == np.int32 and features[3]["labels"].tolist() == exact[3].labels
    assert b.train.trained_tokens == sum(t.trained for t in exact)


def test_a_second_preparation_reads_the_stored_split_without_converting(tmp_path, home, monkeypatch, plugin_manager):
    path = _rows(tmp_path / "rows.jsonl", 120)
    found = plugin_manager.registry.get("data format", "alpaca")
    fmt = found.spec.build(found.spec.options())
    calls = []
    original = type(fmt).to_example
    monkeypatch.setattr(type(fmt), "to_example", lambda self, row: calls.append(1) or original(self, row))
    section = prepare_module.DataSection(format="alpaca", train=str(path), eval=0.25)
    first = prepare_module.prepare_examples(section, fmt, 1)
    assert len(calls) == 120
    second = prepare_module.prepare_examples(section, fmt, 1)
    assert len(calls) == 120  # nothing converted again
    assert second.train == first.train and second.eval == first.eval
    assert second.report.as_dict() == first.report.as_dict()
    assert list(home.joinpath("data").glob("examples-*/manifest.json"))
    _rows(path, 120, start=1)  # new contents: converted again
    third = prepare_module.prepare_examples(section, fmt, 1)
    assert len(calls) == 240 and third.train != first.train


def test_a_list_or_a_glob_of_train_files(tmp_path, home, plugin_manager, tiny_tokenizer):
    a, b = _rows(tmp_path / "a.jsonl", 30), _rows(tmp_path / "b.jsonl", 20, start=30)
    listed = prepare(plugin_manager, {"format": "alpaca", "train": [str(a), str(b)], "eval": 0.2})
    globbed = prepare(plugin_manager, {"format": "alpaca", "train": str(tmp_path / "*.jsonl"), "eval": 0.2})
    assert (len(listed.train), len(listed.eval), listed.report.kept) == (40, 10, 50)
    assert globbed.train == listed.train and globbed.eval == listed.eval
    sources = {e.meta["source"].rsplit(":", 1)[0] for e in [*listed.train, *listed.eval]}
    assert sources == {str(a), str(b)}
    first = tokenize_cached(tiny_tokenizer, listed.train, listed.eval, max_length=64)
    again = prepare(plugin_manager, {"format": "alpaca", "train": [str(a), str(b)], "eval": 0.2})
    assert tokenize_cached(tiny_tokenizer, again.train, again.eval, max_length=64).key == first.key
    _rows(b, 20, start=99)
    changed = prepare(plugin_manager, {"format": "alpaca", "train": [str(a), str(b)], "eval": 0.2})
    assert not tokenize_cached(tiny_tokenizer, changed.train, changed.eval, max_length=64).hit


def _peak_bytes(tmp_path: Path, n: int, plugin_manager, tokenizer) -> int:
    path = _rows(tmp_path / f"rows{n}.jsonl", n)
    tracemalloc.start()
    try:
        data = prepare(plugin_manager, {"format": "alpaca", "train": str(path), "eval": 0.1})
        result = tokenize_cached(tokenizer, data.train, data.eval, max_length=64)
        assert len(result.train) + len(result.eval) == n
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_rows(tmp_path, home, monkeypatch, plugin_manager, tiny_tokenizer):
    monkeypatch.setattr(prepare_module, "SPILL_AT", 200)
    monkeypatch.setattr(cache_module, "IN_MEMORY_TOKENS", 1000)
    monkeypatch.setattr(encode_module, "CHUNK", 128)
    _peak_bytes(tmp_path, 300, plugin_manager, tiny_tokenizer)  # warm-up: template shapes, imports
    small = _peak_bytes(tmp_path, 1000, plugin_manager, tiny_tokenizer)
    large = _peak_bytes(tmp_path, 8000, plugin_manager, tiny_tokenizer)
    # 8x the rows: only a few bytes per row (fingerprints, offsets) may grow
    assert large < 1.5 * small, (small, large)


def test_parquet_is_read_in_batches_with_row_numbers(tmp_path, plugin_manager):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": f"Say {i}.", "input": "", "output": str(i)} for i in range(9000)]
    rows[5000]["output"] = ""  # a bad row past the first batch is named by its record number
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet", row_group_size=2500)
    data = prepare(plugin_manager, {"format": "alpaca", "train": str(tmp_path / "rows.parquet"), "eval": None,
                                    "cache": False})
    assert len(data.train) == 8999 and data.train[-1].messages[-1]["content"] == "8999"
    assert data.report.first_bad["empty content"].startswith(f"{tmp_path / 'rows.parquet'}, row 5001:")
