"""GGUF files as a model source: dequantised once into a plain Hugging Face folder cached in ``$FTX_HOME``.

``[model] name = "path/to/model.gguf"`` is read through transformers' GGUF support (the ``gguf``
package), with the file's own tokenizer and chat template. Reading a GGUF file is slow (its
metadata is parsed in Python and every tensor dequantised), so the result is saved once as a plain
folder (float32 safetensors, tokenizer, generation config) under ``$FTX_HOME/gguf/``, keyed by the
file's SHA-256; every later run, ``ftx data preview`` or export loads that folder in seconds, in the
recipe's dtype. The hash itself is remembered per (path, size, mtime), so the file is read once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..paths import ftx_home

MARKER = "ftx_gguf.json"
"""Written last into a converted folder: its presence means the folder is complete."""

INSTALL = "pip install 'gguf>=0.10'"


def is_gguf(name: str | None) -> bool:
    """True when a recipe's model (or tokenizer) name is a GGUF file."""
    return bool(name) and str(name).lower().endswith(".gguf")


def cache_root() -> Path:
    """Where converted GGUF models live: ``$FTX_HOME/gguf``."""
    root = ftx_home() / "gguf"
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``, remembered in a sidecar per (path, size, mtime) so a file is hashed once."""
    stat = path.stat()
    stamp = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    sidecar = cache_root() / "hashes.json"
    try:
        known = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if stamp in known:
        return str(known[stamp])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    known[stamp] = digest.hexdigest()
    _write_atomic(sidecar, json.dumps(known, indent=1, sort_keys=True))
    return known[stamp]


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def check_gguf_package() -> None:
    """Fail with the install command when the ``gguf`` package (transformers' GGUF reader) is missing."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise RunError(f"reading a .gguf model needs the gguf package; install it with: {INSTALL}")


def gguf_folder(file: str | Path, echo: Callable[[str], None] | None = None) -> Path:
    """The cached Hugging Face folder of a GGUF file, converting it on first use (atomically)."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise RunError(f"model.name: GGUF file {path} not found; fix the path (a relative path is read from the "
                       "recipe's folder) or name a hub id or model folder instead")
    check_gguf_package()
    digest = file_sha256(path)
    target = cache_root() / f"{path.stem}-{digest[:16]}"
    if (target / MARKER).is_file():
        return target
    say = echo or (lambda _message: None)
    say(f"model: converting {path.name} to a plain model folder in {target} (once; later runs load it in seconds)")
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    tmp.chmod(0o755)
    try:
        info = convert(path, tmp)
        info.update(source=str(path.resolve()), sha256=digest, size=path.stat().st_size,
                    seconds=round(time.perf_counter() - started, 1))
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first (or a stale incomplete folder): keep a complete one
            if not (target / MARKER).is_file():
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"model: converted in {time.perf_counter() - started:.0f}s")
    return target


def convert(path: Path, out: Path) -> dict[str, Any]:
    """Dequantise a GGUF file to float32 and save it as a plain folder (model, tokenizer, generation config)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except ImportError as exc:
        raise RunError(f"reading {path} needs the gguf package: {exc}; install it with: {INSTALL}") from exc
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise RunError(f"cannot read GGUF file {path}: {exc} — transformers reads these GGUF architectures: "
                       f"{', '.join(_supported())}; use the model's Hugging Face folder or hub id instead") from exc
    # A GGUF-loaded model refuses save_pretrained (it counts as quantized): move its tensors into a plain
    # model of the same config, built on the meta device so no second copy of the weights is allocated.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True, strict=False)
    plain.tie_weights()
    missing = [n for n, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise RunError(f"cannot convert GGUF file {path}: no weights for {', '.join(missing[:3])}; "
                       "use the model's Hugging Face folder or hub id instead")
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"architecture": type(plain).__name__, "parameters": sum(p.numel() for p in plain.parameters()),
            "chat_template": bool(getattr(tokenizer, "chat_template", None))}


def _supported() -> list[str]:
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:  # pragma: no cover - older transformers
        return ["llama", "mistral", "qwen2"]
    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
