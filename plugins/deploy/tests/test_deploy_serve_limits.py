"""``ftx serve`` is safe to expose: request size and reply time limits, seeds and text it cannot use get a 4xx
in OpenAI's error shape (never a 500), and a busy port fails in one line before the model loads."""

from __future__ import annotations

import socket
import time

import pytest
from ftx.errors import RecipeError
from ftx_deploy.engine import Reply
from ftx_deploy.server import check_port, create_app


class StubEngine:
    """What the server asks of an engine, without a model: replies 'ok' after ``delay`` seconds."""

    name, backend, context_length = "stub", "stub", 512

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def chat_prompt_ids(self, messages):
        return [1] * sum(len(str(m.get("content") or "")) for m in messages)

    def text_prompt_ids(self, prompt):
        return [1] * len(prompt)

    def budget(self, prompt_tokens, max_tokens):
        return max_tokens or 16

    def generate(self, ids, **options):
        time.sleep(self.delay)
        return Reply("ok", "stop", len(ids), 1)


@pytest.fixture
def client():
    from fastapi.testclient import TestClient

    return TestClient(create_app(StubEngine(), max_request_bytes=2000))


def _error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_a_body_over_the_limit_is_a_413(client):
    error = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 5000}]}), 413)
    assert error["code"] == "request_too_large" and "2000 bytes" in error["message"]
    assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 200


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
def test_a_seed_torch_cannot_take_is_a_400(client, seed):
    error = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                              "seed": seed}), 400)
    assert error["param"] == "seed"


def test_a_lone_surrogate_is_a_400_naming_it(client):
    body = b'{"messages": [{"role": "user", "content": "hi \\ud800 there"}]}'
    error = _error(client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}), 400)
    assert error["param"] == "messages.0.content" and "lone surrogate" in error["message"]
    body = b'{"prompt": "\\udfff"}'
    error = _error(client.post("/v1/completions", content=body, headers={"Content-Type": "application/json"}), 400)
    assert "lone surrogate" in error["message"]


def test_a_reply_slower_than_the_timeout_is_a_504():
    from fastapi.testclient import TestClient

    slow = TestClient(create_app(StubEngine(delay=2.0), request_timeout=0.2))
    error = _error(slow.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}), 504)
    assert error["code"] == "timeout" and "0.2 s" in error["message"]


def test_a_busy_port_fails_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RecipeError, match=f"port {port} on 127.0.0.1 is in use: stop what uses it"):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", port)  # free again


def test_ftx_serve_on_a_busy_port_exits_2_before_loading_anything(tmp_path):
    from click.testing import CliRunner
    from ftx.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"port {port} on 127.0.0.1 is in use" in result.output and "Traceback" not in result.output
