"""GRPO through TRL on a zo-llm run's model, task, prompts and reward: the gradient baseline.

Why: every method zo-llm implements is judged against GRPO (ES at Scale,
ESSAM, ESSA), so a user needs the comparison on their own model and task.
What is shared with an ES run of the same config: the model as loaded, the
training prompts, the task's reward through the run's reward scorer (time
limit, failure policy), and the held-out evaluation (zo-llm's own hook,
greedy: the task's metrics, the probe task, the weight change, the KL).
What differs, and must: GRPO samples (temperature 1; identical greedy
samples give a group no spread), and TRL's generation ignores stop strings,
so completions are cut at the task's stop strings before scoring (the extra
tokens are generated, a cost GRPO pays, and counted).

The records are a run's: a train record per optimizer step (``samples``:
training completions so far; the step's generated tokens, forward and
backward passes, peak memory) and an eval record each time the evaluation
settings say (``eval_every`` counts steps, ``eval_every_samples``
completions), at the start and at the end.

``pip install 'zo-llm[baseline]'`` (TRL); on a CPU TRL is told ``use_cpu``
and fp32 (it turns bf16 on by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from transformers import PrinterCallback, TrainerCallback

from ..assembly import build_probe, build_run, load_base
from ..generation.base import cut_at_stop
from ..hooks import HeldoutEvaluation
from ..memory import peak_memory_mb
from ..rundir import RunDir
from .settings import GRPO_SPACES, GRPOSettings, check_trl, saved_config

__all__ = ["GRPOSettings", "train_grpo"]


def train_grpo(config: Any, settings: GRPOSettings, completions: int) -> list[dict[str, Any]]:
    """Trains ``config``'s model with GRPO on its task for about ``completions`` training
    completions (whole steps), and returns its records; with ``config.output.out``, a run
    folder (``run_config.json`` naming grpo and its settings, ``metrics.jsonl``, ``final/``).

    ``config.space`` says what is trained: ``full`` all weights, ``lora`` a peft adapter of
    the space's rank, alpha and targets; other spaces are refused by name.
    """
    check_trl()
    space = config.space.name
    if space not in GRPO_SPACES:
        raise ValueError(f"grpo trains all weights (space full) or a LoRA adapter (space lora), "
                         f"not space {space!r}")  # fmt: skip
    # the evaluator is the ES loop's: any one that fits the space (the config may name one
    # for the runs GRPO is compared with)
    config = dataclasses.replace(config, loop=dataclasses.replace(config.loop, evaluator="auto"))
    run = build_run(config, purpose="eval")
    try:
        run.probe = build_probe(config)
        run.space = _TrainedWeights(run.model, adapter=space == "lora")
        return GRPORun(run, settings).train(settings.steps_for(completions))
    finally:
        run.close()  # its reward processes too, whatever happened


@dataclasses.dataclass
class _TrainedWeights:
    """The space the drift measure sees: ``full`` writes the weights; ``lora`` says its change
    as the adapter's deltas (peft's ``get_delta_weight``), while the adapter is attached."""

    model: Any
    adapter: bool

    @property
    def moves_weights_in_place(self) -> bool:
        return not self.adapter

    def weight_deltas(self) -> Iterator[tuple[str, Any]]:
        for name, module in self.model.named_modules():
            if "default" in getattr(module, "lora_A", {}):
                yield name, module.get_delta_weight("default")


class GRPORun(TrainerCallback):
    """One GRPO training: what a hook needs of a run (:class:`~zo_llm.hooks.RunView`), and
    the TRL callback that logs each step and evaluates when due."""

    def __init__(self, run: Any, settings: GRPOSettings) -> None:
        self.parts, self.config, self.settings = run, run.config, settings
        self.iteration = self.samples = 0
        self.elapsed = 0.0
        self.records: list[dict[str, Any]] = []
        self.folder = RunDir(self.config.output.out) if self.config.output.out else None
        self.heldout = HeldoutEvaluation(
            self.config.evaluation, load_reference=lambda: load_base(self.config)[0]
        )
        self.tokens = 0
        self._counted = (0, 0, 0)  # tokens, forward passes, backward passes at the last record
        self._backward = 0
        self._started = 0.0
        self._evaluating = 0.0  # seconds of held-out evaluations since training started

    # --- what the held-out hook reads (RunView) -------------------------

    @contextlib.contextmanager
    def reporting(self, phase: str, total: int, rows_per_unit: int) -> Iterator[None]:
        del phase, total, rows_per_unit
        yield

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.folder is not None:
            self.folder.append_metrics(record)

    # --- the training ---------------------------------------------------

    def train(self, steps: int) -> list[dict[str, Any]]:
        import trl
        from datasets import Dataset

        model = self.parts.model
        if self.folder is not None:
            self.folder.path.mkdir(parents=True, exist_ok=True)
            self.folder.write_config(
                saved_config(self.config, self.settings), self.parts.generator.versions()
            )
            self.folder.metrics_file.unlink(missing_ok=True)
        self.heldout.on_start(self)  # the KL reference, loaded before any timing
        self._evaluate()
        model.requires_grad_(self.config.space.name == "full")  # loaded for inference only
        rows = [
            {"prompt": self.parts.generator.render(self.parts.task.prompt(example))[0], "index": i}
            for i, example in enumerate(self.parts.train_examples)
        ]
        self._mark()
        with tempfile.TemporaryDirectory() as scratch:
            trainer = trl.GRPOTrainer(
                model=model,
                reward_funcs=self.reward,
                args=self._grpo_config(trl, steps, scratch),
                train_dataset=Dataset.from_list(rows),
                processing_class=self.parts.tokenizer,
                peft_config=_lora_config(self.config) if self._lora else None,
                callbacks=[self],
            )
            if not self.config.output.progress:  # a line of TRL's numbers per step, else
                trainer.remove_callback(PrinterCallback)
            self._started = time.perf_counter()
            trainer.train()
        with self._generating(model):
            if self.records[-1]["type"] != "eval":
                self._evaluate()
        self._save(trainer.model.merge_and_unload() if self._lora else trainer.model)
        return self.records

    @property
    def _lora(self) -> bool:
        return self.config.space.name == "lora"

    def reward(self, prompts: list[str], completions: list[str], completion_ids: list,
               index: list[int], **_: Any) -> list[float | None]:  # fmt: skip
        """TRL's reward function: the task's reward of each completion cut at its stop strings."""
        del prompts
        stops = self.parts.generator.stop
        self.tokens += sum(len(ids) for ids in completion_ids)
        cut = [cut_at_stop(text, stops) for text in completions]
        values = self.parts.scorer([self.parts.train_examples[i] for i in index], cut)
        failures = sum(math.isnan(v) for v in values)
        self.parts.scorer.all_failed(failures, len(values), f"step {self.iteration + 1}'s groups")
        return [None if math.isnan(v) else v for v in values]

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any):
        """After each step (``logging_steps=1``): its train record, then the held-out
        evaluation if due (the model switched to generation and back)."""
        del args, control, kwargs
        if not logs or "reward" not in logs:
            return
        self.iteration = state.global_step
        self.samples = self.iteration * self.settings.completions_per_step()
        self.elapsed = time.perf_counter() - self._started - self._evaluating
        self.log({"type": "train", "iteration": self.iteration, "reward_mean": logs["reward"],
                  "reward_std": logs.get("reward_std"), "time": self.elapsed,
                  "samples": self.samples, **self._work(),
                  "peak_memory_mb": peak_memory_mb(self.parts.model.device)})  # fmt: skip
        if self.heldout.due(self):
            with self._generating(self.parts.model):
                self._evaluate()

    def _evaluate(self) -> None:
        start = time.perf_counter()
        self.log(self.heldout.evaluate(self))
        self._evaluating += time.perf_counter() - start
        self._mark()

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """A micro-batch's backward pass done (the trainer's own account, without an
        optimizer step)."""
        del args, state, control, kwargs
        self._backward += 1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The last micro-batch's backward pass done, and the optimizer step."""
        del args, state, control, kwargs
        self._backward += 1

    def _now(self) -> tuple[int, int, int]:
        return self.tokens, self.parts.generator.forward_passes, self._backward

    def _mark(self) -> None:
        self._counted = self._now()

    def _work(self) -> dict[str, int]:
        """Generated tokens, forward and backward passes since the last record."""
        now, before = self._now(), self._counted
        self._mark()
        names = ("generated_tokens", "forward_passes", "backward_passes")
        return {name: a - b for name, a, b in zip(names, now, before, strict=True)}

    @staticmethod
    @contextlib.contextmanager
    def _generating(model: Any) -> Iterator[None]:
        """Inference as zo-llm generates (TRL trains with gradient checkpointing and the KV
        cache off), then back to training."""
        training, cache = model.training, model.config.use_cache
        model.eval()
        model.config.use_cache = True
        try:
            yield
        finally:
            model.config.use_cache = cache
            model.train(training)

    def _save(self, trained: Any) -> None:
        trained.requires_grad_(False)
        trained.config.use_cache = True
        if getattr(trained, "is_gradient_checkpointing", False):
            trained.gradient_checkpointing_disable()
        if self.folder is not None:
            trained.save_pretrained(str(self.folder.final))
            self.parts.tokenizer.save_pretrained(str(self.folder.final))

    def _grpo_config(self, trl: Any, steps: int, out: str) -> Any:
        config, settings = self.config, self.settings
        on_cpu = str(config.model.device) == "cpu" or not _cuda()
        return trl.GRPOConfig(
            output_dir=out,
            use_cpu=on_cpu,
            bf16=False,
            per_device_train_batch_size=settings.completions_per_step(),
            num_generations=settings.completions,
            max_completion_length=config.model.max_new_tokens,
            learning_rate=settings.lr,
            beta=settings.beta,
            temperature=settings.temperature,
            max_steps=steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=config.loop.seed,
            disable_dropout=True,
            disable_tqdm=not config.output.progress,
        )


def _lora_config(config: Any) -> Any:
    from peft import LoraConfig

    from ..parametrizations.lora import LLAMA_PROJECTIONS

    options = config.space.options
    return LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=0.0,
        target_modules=list(options.target_modules or LLAMA_PROJECTIONS),
        task_type="CAUSAL_LM",
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
