"""``ftx serve`` driven by the official ``openai`` client on 127.0.0.1: answers, streams, queues, and survives bad input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def prompts_and_replies(stopping_run):
    """Held-out prompts and the run model's greedy replies to each (one at a time, as the server generates)."""
    from ftx.api import generate_replies
    from ftx_deploy.smoke import eval_prompts
    from ftx_deploy.source import find_model, load_for_inference

    prompts, _, _ = eval_prompts(stopping_run, 6, lambda _m: None)
    model, tokenizer = load_for_inference(find_model(stopping_run), device="cpu")
    replies = [generate_replies(model, tokenizer, [p], max_new_tokens=32)[0] for p in prompts]
    assert any(replies)
    return prompts, replies, tokenizer


@pytest.fixture(scope="module")
def server(stopping_run, serve_model):
    with serve_model(stopping_run) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=300)


def _chat(client, messages, **kwargs):
    kwargs.setdefault("max_tokens", 32)
    return client.chat.completions.create(model="deploy-stopping-run", messages=messages, temperature=0, **kwargs)


def _streamed(client, messages, **kwargs):
    chunks = list(_chat(client, messages, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return text, finish, chunks


@pytest.mark.slow
def test_models_chat_completion_and_stream(client, prompts_and_replies):
    prompts, replies, tokenizer = prompts_and_replies
    assert [m.id for m in client.models.list()] == ["deploy-stopping-run"]

    answer = _chat(client, prompts[0])
    assert answer.choices[0].message.content.strip() == replies[0]
    assert answer.choices[0].finish_reason == "stop"  # ended at <|im_end|>, not at max_tokens
    rendered = tokenizer.apply_chat_template(prompts[0], tokenize=False, add_generation_prompt=True)
    assert answer.usage.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])

    text, finish, chunks = _streamed(client, prompts[0], stream_options={"include_usage": True})
    assert text.strip() == replies[0] and finish == ["stop"]
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens

    done = client.completions.create(model="deploy-stopping-run", prompt=rendered, temperature=0, max_tokens=32)
    assert done.choices[0].text.strip() == replies[0] and done.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model="deploy-stopping-run", prompt=rendered, temperature=0, max_tokens=32,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices).strip() == replies[0]

    capped = _chat(client, prompts[0], max_tokens=1)
    assert capped.choices[0].finish_reason in ("length", "stop") and capped.usage.completion_tokens == 1


@pytest.mark.slow
def test_eight_concurrent_requests_all_succeed_with_their_own_answers(client, prompts_and_replies):
    prompts, replies, _ = prompts_and_replies
    jobs = [(i % len(prompts), i % 2 == 1) for i in range(8)]

    def ask(job):
        index, stream = job
        if stream:
            return _streamed(client, prompts[index])[0].strip()
        return _chat(client, prompts[index]).choices[0].message.content.strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, jobs))
    assert answers == [replies[index] for index, _ in jobs]


def _raw_post(base_url: str, path: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base_url}{path}", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_bad_input_gets_a_4xx_openai_error_and_the_server_keeps_serving(server, client, prompts_and_replies):
    prompts, replies, _ = prompts_and_replies
    good = prompts[1]

    def still_serves():
        assert _chat(client, good).choices[0].message.content.strip() == replies[1]

    status, body = _raw_post(server, "/chat/completions", b'{"model": "deploy-stopping-run", "messages": [')
    assert status == 400 and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "invalid_json" and "not valid JSON" in body["error"]["message"]
    still_serves()

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-17", messages=good)
    assert caught.value.status_code == 404
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"
    still_serves()

    with pytest.raises(openai.BadRequestError) as caught:
        _chat(client, [{"role": "user", "content": "a b c d " * 400}])
    assert caught.value.body["code"] == "context_length_exceeded" and "512 tokens" in caught.value.body["message"]
    still_serves()

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="deploy-stopping-run", messages=good, max_tokens=-5)
    assert caught.value.body["param"] == "max_tokens" and "greater than or equal to 1" in caught.value.body["message"]
    still_serves()

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="deploy-stopping-run", messages=good, max_tokens=600)
    assert caught.value.body["code"] == "context_length_exceeded" and caught.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="deploy-stopping-run", messages=[])
    assert caught.value.body["param"] == "messages"
    status, body = _raw_post(server, "/chat/completions", b'{"messages": [{"role": "wizard", "content": "hi"}]}')
    assert status == 400 and body["error"]["param"] == "messages.0.role"
    with pytest.raises(openai.NotFoundError):
        client.post("/no/such/path", body={}, cast_to=object)
    still_serves()

    stream = client.completions.create(model="deploy-stopping-run", prompt="z " * 20, max_tokens=400, stream=True,
                                       temperature=0)
    next(iter(stream))
    stream.close()  # a client that walks away mid-stream must not keep the model busy
    still_serves()


def test_stop_strings_are_cut_even_when_split_across_pieces():
    from ftx_deploy.engine import StopMatcher

    matcher = StopMatcher(["END"])
    out = [matcher.feed(p) for p in ["ab", "cE", "N", "Dxyz"]]
    assert "".join(out) == "abc" and matcher.hit
    matcher = StopMatcher([])
    assert matcher.feed("abc") == "abc" and matcher.flush() == ""
    matcher = StopMatcher(["\n\n"])
    assert matcher.feed("a\n") == "a" and matcher.feed("b") == "\n" and matcher.flush() == "b" and not matcher.hit


def test_vllm_backend_explains_why_it_cannot_run_here(tiny_model_path):
    from ftx.cli import main
    from ftx_deploy.vllm_backend import vllm_unavailable

    why = vllm_unavailable()
    if why is None:
        pytest.skip("vLLM and a GPU are present")
    result = CliRunner().invoke(main, ["serve", str(tiny_model_path), "--backend", "vllm"])
    assert result.exit_code == 1
    assert f"--backend vllm: {why}; use the default --backend transformers" in result.output


def test_only_a_server_others_can_reach_without_a_key_is_warned_about():
    from ftx_deploy.server import exposure_warning, key_problem

    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("0.0.0.0", "k") is None
    assert "listening on 0.0.0.0 without an API key" in exposure_warning("0.0.0.0", None)
    assert "set --api-key or FTX_API_KEY" in exposure_warning("0.0.0.0", "")
    assert key_problem("Bearer k3y", "k3y") is None and key_problem("bearer k3y", "k3y") is None
    assert "didn't provide an API key" in key_problem(None, "k3y") and "didn't" in key_problem("Basic k3y", "k3y")
    assert "Incorrect API key" in key_problem("Bearer nope", "k3y")


@pytest.mark.slow
def test_with_an_api_key_only_clients_that_send_it_are_served(stopping_run, serve_model, prompts_and_replies):
    prompts, replies, _ = prompts_and_replies
    with serve_model(stopping_run, env={"FTX_API_KEY": "s3cret"}) as base_url:
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
        assert caught.value.status_code == 401
        assert caught.value.body["code"] == "invalid_api_key" and set(caught.value.body) == {
            "message", "type", "param", "code"}
        status, body = _raw_post(base_url, "/chat/completions", json.dumps({"messages": prompts[0]}).encode())
        assert status == 401 and "didn't provide an API key" in body["error"]["message"]
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=10) as response:
            assert response.status == 200  # health checks need no key

        client = openai.OpenAI(base_url=base_url, api_key="s3cret", max_retries=0, timeout=300)
        assert _chat(client, prompts[0]).choices[0].message.content.strip() == replies[0]
