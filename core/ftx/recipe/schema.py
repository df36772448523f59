"""The core tables of a recipe, validated by pydantic; component tables are validated by their plugins."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator


class Section(BaseModel):
    """A recipe table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ModelSection(Section):
    """``[model]``: which pre-trained model to start from."""

    name: str = Field(
        description="hub id, local folder, GGUF file ('model.Q4_1.gguf'), or a built-in such as 'builtin:tiny-llama'"
    )

    @field_validator("name")
    @classmethod
    def _name_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a model: a hub id, a local folder or a built-in such as 'builtin:tiny-llama'")
        if value != value.strip():
            raise ValueError(f"has spaces around it ({value!r}); remove them")
        return value

    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype: 'auto' is bfloat16 on a GPU that supports it, else float32"
    )
    tokenizer: str | None = Field(None, description="tokenizer to use when it is not the model's own")
    chat_template: str | None = Field(
        None, description="a built-in template name ('chatml', ...) or a Jinja string; default: the tokenizer's own"
    )
    trust_remote_code: bool = Field(
        False, description="run the model repository's own code; also needs --trust-remote-code on the command line"
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="config overrides for built-in models (e.g. num_hidden_layers)"
    )
    pretrain_steps: int = Field(
        0, ge=0, description="built-in models only: pre-train on generated text this many steps first (cached)"
    )


class MixSource(BaseModel):
    """One table of ``[data] mix``: a data set mixed into the training split at a share (replay against forgetting).

    Keys other than these go to the source's data format as its options (e.g. ``split_on`` for ``"text"``)."""

    model_config = ConfigDict(extra="allow")

    train: str | list[str] | None = Field(None, description="local file(s) or a glob of the mixed data")
    source: Literal["general-text"] | None = Field(
        None, description="'general-text': the text the forgetting check draws from, minus the passages it measures on"
    )
    format: str | None = Field(None, description="a registered data format of the file(s); 'text' for source")
    columns: dict[str, str] = Field(default_factory=dict, description="map the format's field names to the file's")
    ratio: float = Field(gt=0, lt=1, description="the share of training examples drawn from this source")
    _selected: Any = PrivateAttr(None)  # its data format, set by the recipe loader (ftx.recipe.loader.check_mix)
    _origin: Any = PrivateAttr(None)  # where source = "general-text" draws from, set likewise

    @model_validator(mode="after")
    def _one_origin(self) -> MixSource:
        if (self.train is None) == (self.source is None):
            raise ValueError("give train (a file or glob) or source = 'general-text', not both or neither")
        if self.train is not None and self.format is None:
            raise ValueError("format is required with train: a registered data format such as 'text' or 'messages'")
        if self.source is not None and self.format not in (None, "text"):
            raise ValueError("source = 'general-text' is plain text: leave format out")
        return self


def _mix_tables(value: Any) -> Any:
    """Validate each ``[data] mix`` table so errors name ``data.mix[0].ratio``; the shares must leave room for the task."""
    from pydantic import ValidationError

    from ..errors import NestedOptionsError, Problem

    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("must be a list of tables: mix = [{ train = 'general.jsonl', format = 'text', ratio = 0.2 }]")  # noqa: TRY004 - pydantic reports ValueError
    problems: list[Problem] = []
    out: list[MixSource] = []
    for index, item in enumerate(value):
        if isinstance(item, MixSource):
            out.append(item)
            continue
        if not isinstance(item, dict):
            problems.append(Problem(f"[{index}]", "must be a table: { train = ..., format = ..., ratio = ... }"))
            continue
        try:
            out.append(MixSource.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                message = err["msg"].removeprefix("Value error, ")
                problems.append(Problem(f"[{index}].{loc}" if loc else f"[{index}]", message))
    total = sum(item.ratio for item in out)
    if not problems and total >= 1:
        problems.append(Problem("", f"the ratios add up to {total:g}: they must leave a share for the task (sum < 1)"))
    if problems:
        raise NestedOptionsError(problems)
    return out


class DataSection(Section):
    """``[data]``: the core keys; other keys go to the selected format's options."""

    format: str = Field(description="a registered data format, e.g. 'alpaca'")
    train: str | list[str] = Field(description="local file(s), a glob, or a hub dataset id")
    eval: float | str | list[str] | None = Field(
        0.1, description="a fraction of train held out (0 < f < 1), a path, or none"
    )
    max_length: int = Field(512, gt=0, description="tokens per example; longer ones follow 'overlength'")
    overlength: Literal["truncate", "drop-oldest-turns", "drop", "error"] = Field(
        "truncate", description="what to do with longer examples: cut the end, drop a conversation's oldest "
        "exchanges until it fits, drop the example, or stop")
    packing: bool = Field(False, description="pack short examples into full sequences (no cross-example attention)")
    group_by_length: bool = Field(
        False, description="batch examples of similar length together (less padding; unpacked training)"
    )
    cache: bool = Field(True, description="keep tokenised data under $FTX_HOME/data, keyed by data, tokenizer and options")
    columns: dict[str, str] = Field(default_factory=dict, description="map the format's field names to the file's")
    max_bad_fraction: float = Field(0.05, ge=0, le=1, description="fail when more rows than this are dropped")
    strict: bool = Field(False, description="fail at the first bad row, naming file and row")
    limit: int | None = Field(None, gt=0, description="use only the first N rows (quick experiments)")
    split: str = Field("train", description="split of a hub dataset")
    seed: int | None = Field(None, description="seed of the train/eval split; default: [train] seed")
    mix: list[MixSource] = Field(
        default_factory=list, description="data mixed into the training split at a share (replay against forgetting): "
        "[{ train = 'general.jsonl', format = 'text', ratio = 0.2 }] or [{ source = 'general-text', ratio = 0.2 }]"
    )

    _check_mix = field_validator("mix", mode="before")(classmethod(lambda cls, value: _mix_tables(value)))

    @field_validator("train")
    @classmethod
    def _train_given(cls, value: str | list[str]) -> str | list[str]:
        items = value if isinstance(value, list) else [value]
        if not items or any(not item.strip() for item in items):
            raise ValueError("must name the data: a file, a glob or a hub dataset id")
        return value

    @model_validator(mode="after")
    def _eval_fraction(self) -> DataSection:
        if isinstance(self.eval, float) and not 0.0 < self.eval < 1.0:
            raise ValueError("eval must be a fraction between 0 and 1, a path, or left out")
        return self


PROJECTED_OPTIMIZERS = {"galore_": ("galore_torch", "galore-torch"), "apollo_": ("apollo_torch", "apollo-torch")}
"""transformers optimizers that project gradients of ``optimizer_target_modules``: name prefix -> (module, package)."""


class TrainSection(Section):
    """``[train]``: the optimisation loop shared by every objective."""

    epochs: float = Field(1.0, gt=0, description="passes over the training data")
    max_steps: int | None = Field(None, gt=0, description="optimizer steps; wins over epochs when set")
    lr: float = Field(2e-4, gt=0, description="peak learning rate")
    batch_size: int = Field(8, gt=0, description="examples per device per step")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    seed: int = Field(42, description="seed for data order, initialisation and dropout")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps spent warming the learning rate up")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 disables it")
    optimizer: str = Field(
        "auto", description="a transformers optimizer name; 'auto': fused AdamW on CUDA and CPU, adamw_torch elsewhere; "
        "'galore_adamw' (GaLore: full training with low-rank optimizer states; needs galore-torch)"
    )
    optimizer_target_modules: list[str] | str | None = Field(
        None, description="GaLore/APOLLO optimizers: the linear layers projected ('all-linear', a list of names such as "
        "['attn', 'mlp'], or a regular expression); default 'all-linear' for them"
    )
    optimizer_args: dict[str, float | int | str] = Field(
        default_factory=dict, description="extra optimizer settings (transformers' optim_args), e.g. GaLore's "
        "{rank = 128, update_proj_gap = 200, scale = 0.25}"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="mixed precision of the training matmuls (weights stay in model.dtype): 'auto' is bf16 on a "
        "GPU that supports it (with model.dtype = 'auto') and fp32 on a CPU; 'bf16' on a CPU with bf16 units "
        "(AVX512-BF16, AMX) trains about 2x faster than fp32; 'fp16' needs a CUDA GPU"
    )
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    compile: bool = Field(
        False, description="torch.compile the model (transformers' torch_compile): faster steps after a one-time "
        "compilation (a minute or more); needs a C++ compiler on CPU"
    )
    log_every: int = Field(10, gt=0, description="steps between logged metrics")
    eval_every: int | None = Field(None, gt=0, description="steps between validation-loss evaluations")
    save_every: int | None = Field(None, gt=0, description="steps between checkpoints; default: end of training only")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch; default: torch's own")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    max_bad_steps: int = Field(
        5, gt=0, description="NaN/inf steps are skipped with weights unchanged; this many in a row abort the run"
    )
    oom_backoff: bool = Field(
        False, description="on out-of-memory, halve batch_size and double grad_accum (same effective batch) and retry"
    )
    divergence_factor: float = Field(
        10.0, ge=0, description="stop as diverged when the loss exceeds this multiple of the first logged loss; 0 disables"
    )

    @model_validator(mode="after")
    def _optimizer_package(self) -> TrainSection:
        import importlib.util

        needs = next((pkg for prefix, pkg in PROJECTED_OPTIMIZERS.items() if self.optimizer.startswith(prefix)), None)
        if needs is None:
            if self.optimizer_target_modules is not None:
                raise ValueError("optimizer_target_modules applies to GaLore/APOLLO optimizers only "
                                 f"(optimizer = 'galore_adamw', ...), not {self.optimizer!r}")
            return self
        module, distribution = needs
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"optimizer {self.optimizer!r} needs the {distribution} package, which is not installed: "
                             f"pip install {distribution}")
        return self


class OutputSection(Section):
    """``[output]``: where the run folder goes and what is saved."""

    dir: str = Field("runs/run", description="the run folder")
    save: Literal["auto", "adapter", "merged"] = Field(
        "auto", description="adapter methods: save the adapter ('auto'/'adapter') or a merged model"
    )


class EvaluationSection(Section):
    """``[evaluation]``: baselines, the forgetting check, the overfitting watch, samples and the gate."""

    baseline_shots: int = Field(
        0, ge=0, description="also score the base model prompted with this many training examples (0: no baseline)"
    )
    forgetting: bool = Field(True, description="score perplexity on general text before and after training")
    forgetting_text: str = Field(
        "auto", description="a text file (one passage per line), or 'auto': generated text for built-in models, "
        "English prose otherwise"
    )
    forgetting_limit: int = Field(64, gt=0, description="passages of general text scored")
    forgetting_threshold: float = Field(
        0.15, gt=0, description="flag forgetting when general-text perplexity rises by more than this share"
    )
    early_stopping_patience: int | None = Field(
        None, gt=0, description="stop after this many validation evaluations without improvement (needs train.eval_every)"
    )
    early_stopping_min_delta: float = Field(0.0, ge=0, description="a smaller drop in validation loss is no improvement")
    restore_best: bool = Field(
        True, description="when early stopping: put back the weights of the best validation loss (kept in memory)"
    )
    overfit_tolerance: float = Field(
        0.02, ge=0, description="warn when validation loss ends this share above its best while training loss fell"
    )
    samples: int = Field(5, ge=0, description="held-out prompts whose generations the report shows")
    gate: dict[str, Any] = Field(
        default_factory=dict,
        description='thresholds the run must meet, e.g. "exact-match.exact_match" = ">= 0.8", forgetting = "<= 10%"',
    )


SYNONYMS: dict[str, str] = {
    "learning_rate": "lr",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "steps": "max_steps",
    "batch": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "seq_len": "max_length",
    "max_seq_length": "max_length",
    "model_name": "name",
    "output_dir": "dir",
}
"""Common names from other tools, offered as did-you-mean for the ftx key."""

FSDP_KEYS = ("fsdp_version", "reshard_after_forward", "cpu_offload", "activation_checkpointing")
"""``[distributed]`` keys that apply to ``strategy = "fsdp"`` only."""
DEEPSPEED_KEYS = ("zero_stage", "offload_optimizer", "offload_params", "deepspeed")
"""``[distributed]`` keys that apply to ``strategy = "deepspeed"`` only."""
LEGACY_FSDP_DEFAULT = "full_shard auto_wrap"
"""The ``distributed.fsdp`` string every ``recipe.lock.toml`` of ftx 0.1 before sharded training recorded."""
DEEPSPEED_INSTALL = "pip install deepspeed"
"""What installs DeepSpeed (it builds its CUDA kernels when first used, so it needs the CUDA toolkit too)."""


class DistributedSection(Section):
    """``[distributed]``: how several processes share the training (``ftx run --nproc-per-node N``)."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="ddp: every process holds the whole model; fsdp: parameters, gradients and optimizer "
        "state are sharded across processes (torch FSDP2 through accelerate; CPU or CUDA); deepspeed: DeepSpeed "
        "ZeRO through accelerate (CUDA only)"
    )
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="'auto': nccl on CUDA, gloo on CPU")
    fsdp_version: Literal[2] = Field(2, description="fsdp: torch's FSDP2 (fully_shard); FSDP1 is deprecated upstream")
    reshard_after_forward: bool = Field(
        True, description="fsdp: free each layer's gathered parameters after its forward (ZeRO-3-like, least "
        "memory); false keeps them until backward (ZeRO-2-like, fewer all-gathers)"
    )
    cpu_offload: bool = Field(
        False, description="fsdp: keep the sharded parameters, gradients and optimizer state in CPU memory (GPUs)"
    )
    activation_checkpointing: bool = Field(
        False, description="fsdp: recompute each decoder layer's activations in backward (FSDP's own; "
        "train.gradient_checkpointing = true turns it on too)"
    )
    zero_stage: Literal[2, 3] = Field(
        3, description="deepspeed: 2 shards optimizer state and gradients; 3 shards the parameters too"
    )
    offload_optimizer: bool = Field(False, description="deepspeed: optimizer state in CPU memory (ZeRO-Offload)")
    offload_params: bool = Field(False, description="deepspeed: parameters in CPU memory (zero_stage = 3 only)")
    deepspeed: str | None = Field(
        None, description="deepspeed: a DeepSpeed JSON config file of your own, used instead of the keys above"
    )

    @model_validator(mode="before")
    @classmethod
    def _earlier_fsdp_string(cls, data: Any) -> Any:
        # recipe.lock.toml files written before FSDP trained for real spell the old default option string;
        # the run folders they describe must stay readable (export, serve, resume)
        if isinstance(data, dict) and data.get("fsdp") == LEGACY_FSDP_DEFAULT:
            data = {k: v for k, v in data.items() if k != "fsdp"}
        elif isinstance(data, dict) and "fsdp" in data:
            raise ValueError("fsdp (transformers' option string) is gone: set strategy = 'fsdp' and, where needed, "
                             "reshard_after_forward, cpu_offload or activation_checkpointing")
        return data

    @field_validator("strategy")
    @classmethod
    def _deepspeed_installed(cls, value: str) -> str:
        import importlib.util

        if value == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
            raise ValueError(
                f"'deepspeed' needs the deepspeed package, which is not installed: {DEEPSPEED_INSTALL} "
                "(on a machine with CUDA GPUs and the CUDA toolkit); or use strategy = 'fsdp', which needs "
                "nothing more than torch"
            )
        return value

    @model_validator(mode="after")
    def _keys_fit_the_strategy(self) -> DistributedSection:
        # keys judged by value, not by presence: a resolved recipe (recipe.lock.toml) spells every default
        changed = {key for key, field in type(self).model_fields.items() if getattr(self, key) != field.default}
        for strategy, keys in (("fsdp", FSDP_KEYS), ("deepspeed", DEEPSPEED_KEYS)):
            stray = [key for key in keys if key in changed]
            if stray and self.strategy != strategy:
                raise ValueError(f"{', '.join(stray)} apply to strategy = '{strategy}' only, and strategy is "
                                 f"'{self.strategy}': remove them or set strategy = '{strategy}'")
        if self.deepspeed is not None and changed & {"zero_stage", "offload_optimizer", "offload_params"}:
            raise ValueError("deepspeed (a config file of your own) replaces zero_stage, offload_optimizer and "
                             "offload_params: give the file or the keys, not both")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage = 3 (ZeRO-2 keeps every parameter on each GPU)")
        return self


TOP_LEVEL: dict[str, str] = {
    "model": "table",
    "data": "table",
    "method": "component",
    "objective": "component",
    "train": "table",
    "evaluators": "component list",
    "evaluation": "table",
    "distributed": "table",
    "output": "table",
    "stages": "table list",
    "loggers": "component list",
    "kernels": "component list",
}
