"""``ftx export RUN_DIR --to DIR``: a standalone Hugging Face folder that stops where it should.

The folder holds safetensors weights, the tokenizer with the chat template used in training, and
a ``generation_config.json`` whose ``eos_token_id`` includes the template's end-of-turn token. An
adapter run is merged into its base (``--merge``, the default; a QLoRA base is dequantised to the
compute dtype first, so the merge adds the adapter to the very weights it trained against) or
copied as an adapter (``--adapter``). The merge is the method's own (``Method.merge``, e.g. ftx-lora's),
reached through ``ftx.api``: this plugin knows no adapter library. Before the folder appears, a smoke
test generates greedily on held-out prompts with the folder's own template and generation config:
every reply must stop at an EOS id before a length cap, or nothing is exported and the error says why.

``--format gguf`` turns the smoke-tested folder into one GGUF file (:mod:`ftx_deploy.gguf_writer`, f16 or
q8_0) plus an Ollama ``Modelfile``; the file is read back and its greedy replies to the smoke test's prompts
must match the folder's (:mod:`ftx_deploy.gguf_check`) before it is kept.

Everything is written to a temporary sibling folder and renamed into place at the end, so DIR
never holds half an export; a non-empty DIR is replaced only with ``overwrite`` and only when it
is an earlier export (it holds ``ftx_export.json``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from ftx.api import replace_dir, write_json
from ftx.errors import FtxError, RunError

from .smoke import SmokeReport, check_smoke, context_room, default_cap, run_smoke_test, smoke_inputs
from .source import ModelSource, find_model, load_causal_lm, load_tokenizer, pick_device, quiet
from .stops import as_id_list, template_end_of_turn, token_names

Echo = Callable[[str], None]
Mode = Literal["auto", "merge", "adapter"]
Format = Literal["hf", "gguf"]
EXPORT_MARKER = "ftx_export.json"
"""Every export holds this file; only such folders may be overwritten."""


class ExportRefused(FtxError):
    """The export cannot start as asked (target folder, mode); nothing was written."""

    exit_code = 2


def export_model(
    path: Path, to: Path, *, mode: Mode = "auto", overwrite: bool = False, smoke_test: bool = True,
    smoke_prompts: int = 4, smoke_max_tokens: int | None = None, device: str = "auto", echo: Echo = print,
    trust_remote_code: bool = False, fmt: Format = "hf", quant: str = "f16",
) -> dict[str, Any]:
    """Export the model of a run (or model) folder to ``to``; returns what ``ftx_export.json`` holds.

    ``trust_remote_code``: a run whose recipe set ``model.trust_remote_code`` loads only with it
    (``--trust-remote-code``), as ``ftx run`` does. ``fmt = "gguf"`` writes a verified GGUF file
    (``quant``: f16 or q8_0) and an Ollama Modelfile instead of a Hugging Face folder."""
    quiet()
    source = find_model(Path(path))
    to = _check_target(Path(to), source, overwrite)
    mode = _check_mode(mode, source)
    if fmt == "gguf":
        _check_gguf_request(mode, smoke_test, quant)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{to.name}.", suffix=".tmp", dir=to.parent))
    try:
        folder = tmp / ".hf" if fmt == "gguf" else tmp
        folder.mkdir(exist_ok=True)
        info = _write_export(source, folder, mode, echo, trust_remote_code)
        report = None
        if not info["causal_lm"]:
            if fmt == "gguf":
                raise ExportRefused("--format gguf: the model has no language-model head; GGUF holds causal LMs")
            echo("smoke test: not applicable (the model has no language-model head)")
            info["smoke_test"] = "not applicable"
        elif smoke_test:
            report = _smoke(source, folder, mode, smoke_prompts, smoke_max_tokens, device, echo, trust_remote_code)
            info["smoke_test"] = report.as_dict()
        else:
            echo("smoke test: skipped (--no-smoke-test)")
            info["smoke_test"] = "skipped"
        if fmt == "gguf" and report is not None:
            info["gguf"] = _write_verified_gguf(source, folder, tmp, to.name, quant, report, device, echo)
            info["mode"] = f"gguf-{quant}"
            shutil.rmtree(folder)
        write_json(tmp / EXPORT_MARKER, info)
        _usual_permissions(tmp)
        replace_dir(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    echo(f"exported {info['mode']} model to {to}")
    return info


def _usual_permissions(folder: Path) -> None:
    """Temporary folders and files are private (0700/0600); an export gets the permissions of any new file."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for item in folder.rglob("*"):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def _check_target(to: Path, source: ModelSource, overwrite: bool) -> Path:
    """The resolved target folder, refused when it would lose data."""
    to = to.expanduser().resolve()
    model_dir = source.model_dir
    if to == model_dir or model_dir.is_relative_to(to) or to.is_relative_to(model_dir):
        raise ExportRefused(f"--to {to} overlaps the model being exported ({model_dir}); choose another folder")
    if to.exists() and not to.is_dir():
        raise ExportRefused(f"--to {to} exists and is not a folder")
    if to.exists() and any(to.iterdir()):
        if not overwrite:
            raise ExportRefused(f"--to {to} is not empty; pass --overwrite to replace it, or choose another folder")
        if not (to / EXPORT_MARKER).is_file():
            raise ExportRefused(f"refusing to overwrite {to}: it is not an ftx export (no {EXPORT_MARKER})")
    return to


def _check_mode(mode: Mode, source: ModelSource) -> Mode:
    if mode == "adapter" and source.is_full:
        raise ExportRefused(f"--adapter: {source.model_dir} holds a full model, not an adapter; export it without --adapter")
    if mode == "auto":
        return "auto" if source.is_full else "merge"
    return mode


def _ftx_version() -> str:
    try:
        return version("ftx")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _write_export(source: ModelSource, tmp: Path, mode: Mode, echo: Echo, trust_remote_code: bool = False
                  ) -> dict[str, Any]:
    """Weights, tokenizer and generation config into ``tmp``; the export's description."""
    config = _model_config(source.model_dir)
    causal = any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or ["ForCausalLM"])
    tokenizer = load_tokenizer(source.model_dir)
    if mode == "adapter":
        shutil.copytree(source.model_dir, tmp, dirs_exist_ok=True)
        kind, model = "adapter", None
    elif not source.is_full or causal:
        model = (merged_model(source, echo, trust_remote_code) if not source.is_full
                 else load_causal_lm(source.model_dir, "cpu"))
        model.config.use_cache = True  # training may have switched the KV cache off; inference wants it
        model.save_pretrained(tmp)
        kind = "full" if source.is_full else "merged"
    else:
        for item in source.model_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        kind, model = "full", None
    tokenizer.save_pretrained(tmp)
    info: dict[str, Any] = {
        "ftx": _ftx_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": str(source.run_dir or source.model_dir), "mode": kind, "causal_lm": causal,
    }
    if causal:
        info.update(write_generation_config(tmp, source.model_dir, model, tokenizer, echo))
    return info


def _model_config(model_dir: Path) -> dict[str, Any]:
    """The saved ``config.json`` (an adapter's is its base's; it is a causal LM unless peft says otherwise)."""
    file = model_dir / "config.json"
    if file.is_file():
        return json.loads(file.read_text(encoding="utf-8"))
    adapter = json.loads((model_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter.get("task_type") == "SEQ_CLS":
        return {"architectures": ["ForSequenceClassification"]}
    return {}


def write_generation_config(folder: Path, model_dir: Path, model: Any, tokenizer: Any, echo: Echo) -> dict[str, Any]:
    """Save a generation config whose EOS ids include the template's end-of-turn token; say what was added."""
    from transformers import GenerationConfig

    saved = model_dir / "generation_config.json"
    if saved.is_file():
        config = GenerationConfig.from_pretrained(str(model_dir))
    elif model is not None and getattr(model, "generation_config", None) is not None:
        config = GenerationConfig.from_dict(model.generation_config.to_dict())
    else:
        config = GenerationConfig()
    before = as_id_list(config.eos_token_id)
    end = template_end_of_turn(tokenizer)
    wanted = list(before)
    for token in (tokenizer.eos_token_id, end):
        if token is not None and token not in wanted:
            wanted.append(int(token))
    if not wanted:
        raise RunError(f"{model_dir}: neither the generation config, the tokenizer nor the chat template names an "
                       "end-of-sequence token; generation could never stop")
    added = [t for t in wanted if t not in before]
    if added:
        echo(f"generation config: added {token_names(tokenizer, added)} to eos_token_id {before}")
    config.eos_token_id = wanted
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    config.save_pretrained(folder)
    return {"eos_token_id": wanted, "end_of_turn": None if end is None else
            {"id": end, "token": tokenizer.convert_ids_to_tokens(end)}}


def _check_gguf_request(mode: Mode, smoke_test: bool, quant: str) -> None:
    """Refuse a GGUF export that cannot be written or checked, before anything is written."""
    from .gguf_writer import QUANTS

    if importlib.util.find_spec("gguf") is None:
        raise ExportRefused("--format gguf needs the gguf package: pip install 'gguf>=0.10'")
    if quant not in QUANTS:
        raise ExportRefused(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    if mode == "adapter":
        raise ExportRefused("--format gguf writes a whole model: drop --adapter (the adapter is merged first)")
    if not smoke_test:
        raise ExportRefused("--format gguf checks the file against the smoke test's greedy replies: drop --no-smoke-test")


def _write_verified_gguf(source: ModelSource, folder: Path, tmp: Path, name: str, quant: str, report: SmokeReport,
                         device: str, echo: Echo) -> dict[str, Any]:
    """Write ``folder`` as a GGUF file in ``tmp``, read it back against the smoke test's replies, add a Modelfile."""
    from .gguf_check import LONG_PROMPTS, long_references, next_token_logits, verify_gguf
    from .gguf_writer import write_gguf
    from .ollama import modelfile

    tokenizer = load_tokenizer(folder)
    end = template_end_of_turn(tokenizer)
    file = tmp / f"{name}.{quant}.gguf"
    written = write_gguf(folder, file, quant=quant, name=source.name, chat_template=tokenizer.chat_template,  # type: ignore[arg-type]
                         pre_tokenizer=pre_tokenizer_name(source, folder), end_of_turn=end, echo=echo)
    prompts = [g.prompt for g in report.generations]
    expected = [g.token_ids for g in report.generations]
    device = pick_device(device)
    model = load_causal_lm(folder, device)
    long_expected = long_references(model, tokenizer, report.eos_ids)
    logits = next_token_logits(model, tokenizer, [*prompts, *LONG_PROMPTS])
    del model
    checked = verify_gguf(file, tokenizer, prompts, expected, report.eos_ids, report.max_new_tokens, quant,
                          device, long_expected, logits)
    echo(f"gguf: read back with transformers: {checked['identical']} of {checked['replies']} greedy replies identical "
         f"to the exported model's, agreement {checked['agreement']:.0%}, {checked['stopped']} stopped ({checked['rule']}); "
         f"next-token logits within {checked['logit_gap']:.2%} of the largest")
    stops = [tokenizer.convert_ids_to_tokens(i) for i in report.eos_ids]
    (tmp / "Modelfile").write_text(modelfile(file.name, tokenizer, stops), encoding="utf-8")
    return {**written, "check": checked}


def pre_tokenizer_name(source: ModelSource, folder: Path) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer: the base GGUF's own when the run started from one,
    else the name whose split pattern ``tokenizer.json`` uses, else ``gpt2`` (GPT-2's byte-level split)."""
    base = _base_gguf(source)
    if base is not None:
        from gguf import GGUFReader

        field = GGUFReader(str(base)).fields.get("tokenizer.ggml.pre")
        if field is not None:
            return bytes(field.parts[field.data[0]]).decode("utf-8")
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # pragma: no cover - an older transformers names no splits
        return "gpt2"
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    text = json.dumps(spec.get("pre_tokenizer"))
    return next((name for name, split in GGUF_PRE_TOKENIZER_SPLITS.items() if json.dumps(split)[1:-1] in text), "gpt2")


def _base_gguf(source: ModelSource) -> Path | None:
    """The GGUF file a run's recipe trained from, when it did and the file is still there."""
    if source.run_dir is None:
        return None
    try:
        from ftx.api import read_run_recipe

        name = str(read_run_recipe(source.run_dir).model.name)
    except Exception:  # noqa: BLE001 - a run without a readable recipe simply has no known base file
        return None
    path = Path(name)
    return path if name.lower().endswith(".gguf") and path.is_file() else None


def _smoke(source: ModelSource, tmp: Path, mode: Mode, count: int, cap: int | None, device: str, echo: Echo,
           trust_remote_code: bool = False) -> SmokeReport:
    """Load the export as users will, generate on held-out prompts, and fail unless every reply stopped."""
    from transformers import GenerationConfig

    from .source import load_for_inference

    inputs = smoke_inputs(source.run_dir, count, echo)
    device = pick_device(device)
    if mode == "adapter":
        model, _ = load_for_inference(ModelSource(tmp, source.run_dir), device=device, echo=echo,
                                      trust_remote_code=trust_remote_code)
    else:
        model = load_causal_lm(tmp, device)
    tokenizer = load_tokenizer(tmp)
    eos_ids = as_id_list(GenerationConfig.from_pretrained(str(tmp)).eos_token_id)
    room = context_room(model, tokenizer, inputs.prompts)
    cap, how = (cap, "--smoke-max-tokens") if cap else default_cap(tokenizer, inputs.answers, room)
    report = run_smoke_test(model, tokenizer, inputs.prompts, eos_ids=eos_ids, max_new_tokens=cap,
                            prompt_source=inputs.origin, cap_source=how, room=room)
    check_smoke(report, tokenizer)
    echo(f"smoke test: {report.summary()}")
    return report


def merged_model(source: ModelSource, echo: Echo, trust_remote_code: bool = False) -> Any:
    """The adapter merged into its base by the method that saved it, as a plain transformers model on the CPU.

    The adapter is first loaded exactly as it trained (a QLoRA base in 4 bits); the method's merge then
    folds it into an unquantised base whose weights are the ones it trained against.
    """
    from ftx.api import load_trained, merge_trained

    return merge_trained(load_trained(source, device="cpu", echo=echo, trust_remote_code=trust_remote_code)).eval()
