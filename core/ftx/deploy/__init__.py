"""Deploy a trained model: export it, chat with it, generate from a file, serve it over HTTP.

* :mod:`.source` finds the model in a run folder or model folder and loads it for inference;
* :mod:`.stops` works out the end-of-turn token the chat template ends assistant turns with;
* :mod:`.smoke` checks that greedy generations stop at an EOS id before a length cap;
* :mod:`.export` writes a standalone Hugging Face folder (merged or adapter), smoke-tested;
* :mod:`.engine` generates (whole or streamed) behind a lock, for chat, files and the server;
* :mod:`.chat` is the terminal chat and the JSONL batch generation;
* :mod:`.server` is the OpenAI-compatible HTTP server (FastAPI + uvicorn), :mod:`.vllm_backend` its
  optional vLLM engine.

Nothing here is imported by ``ftx --help``: the CLI imports these modules inside its commands.
"""
