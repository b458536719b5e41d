"""GRPO through TRL on a zo-llm run's model, task, prompts and reward: the gradient baseline.

Why: every method zo-llm implements is judged against GRPO (ES at Scale,
ESSAM, ESSA), so a user needs the comparison on their own model and task.
What is shared with an ES run of the same config: the model as loaded, the
training prompts, the task's reward through the run's reward scorer (time
limit, failure policy), and the held-out evaluation (zo-llm's own, greedy).
What differs, and must: GRPO samples (temperature 1; identical greedy
samples give a group no spread), and TRL's generation ignores stop strings,
so completions are cut at the task's stop strings before scoring (the extra
tokens are generated, a cost GRPO pays, and counted).

``pip install 'zo-llm[baseline]'`` (TRL); on a CPU TRL is told ``use_cpu``
and fp32 (it turns bf16 on by default).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from ..assembly import build_run
from ..evaluation.heldout import evaluate_heldout
from ..generation.base import cut_at_stop
from ..rundir import RunDir

__all__ = ["GRPOSettings", "train_grpo"]


@dataclass(frozen=True)
class GRPOSettings:
    """GRPO's own settings; the model, task, prompts and budget are the run config's."""

    completions: int = field(
        default=4, metadata={"help": "completions per prompt (a group; TRL's num_generations)"}
    )
    prompts_per_step: int = field(default=4, metadata={"help": "prompts per optimizer step"})
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate"})
    beta: float = field(default=0.0, metadata={"help": "KL penalty to the base (TRL's default 0)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})

    def __post_init__(self) -> None:
        if self.completions < 2:
            raise ValueError(f"completions={self.completions}: a group needs 2 or more")
        if self.prompts_per_step < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError("prompts_per_step must be >= 1 and lr a positive number")

    def completions_per_step(self) -> int:
        return self.completions * self.prompts_per_step


def import_trl() -> Any:
    try:
        import trl
    except ImportError:
        raise ValueError("the grpo baseline needs TRL: pip install 'zo-llm[baseline]'") from None
    return trl


def train_grpo(config: Any, settings: GRPOSettings, completions: int) -> list[dict[str, Any]]:
    """Trains ``config``'s model with GRPO on its task for about ``completions`` training
    completions (whole steps), and returns its records (held-out before and after, one train
    record per step); with ``config.output.out``, a run folder with ``final/``.

    ``config.space`` says what is trained: ``full`` all weights, ``lora`` a peft adapter of
    the space's rank, alpha and targets; other spaces are refused by name.
    """
    trl = import_trl()
    space = config.space.name
    if space not in ("full", "lora"):
        raise ValueError(f"grpo trains all weights (space full) or a LoRA adapter (space lora), "
                         f"not space {space!r}")  # fmt: skip
    run = build_run(config, purpose="eval")
    try:
        return _train(
            trl, run, settings, max(1, round(completions / settings.completions_per_step()))
        )
    finally:
        run.close()  # its reward process too, whatever happened


def _train(trl: Any, run: Any, settings: GRPOSettings, steps: int) -> list[dict[str, Any]]:
    config, space = run.config, run.config.space.name
    records = [_heldout(run, 0, 0, 0.0)]
    stops = run.generator.stop
    counted = {"tokens": 0}

    def reward(
        prompts: list[str], completions: list[str], completion_ids: list, index: list[int], **_: Any
    ):
        cut = [cut_at_stop(text, stops) for text in completions]
        counted["tokens"] += sum(len(ids) for ids in completion_ids)
        values = run.scorer([run.train_examples[i] for i in index], cut)
        return [None if math.isnan(v) else v for v in values]

    from datasets import Dataset

    rows = [
        {"prompt": run.generator.render(run.task.prompt(example))[0], "index": i}
        for i, example in enumerate(run.train_examples)
    ]
    run.model.requires_grad_(space == "full")  # zo-llm loads models for inference only
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = trl.GRPOTrainer(
            model=run.model,
            reward_funcs=reward,
            args=_grpo_config(trl, config, settings, steps, scratch),
            train_dataset=Dataset.from_list(rows),
            processing_class=run.tokenizer,
            peft_config=_lora_config(config) if space == "lora" else None,
        )
        trainer.train()
    seconds = time.perf_counter() - start
    _ready_for_generation(run.model)
    for entry in trainer.state.log_history:
        if "reward" in entry:
            step = int(entry.get("step", 0))
            records.append({"type": "train", "iteration": step, "reward_mean": entry["reward"],
                            "samples": step * settings.completions_per_step()})  # fmt: skip
    final = _heldout(run, steps, steps * settings.completions_per_step(), seconds)
    final["generated_tokens"] = counted["tokens"]
    records.append(final)
    trained = trainer.model.merge_and_unload() if space == "lora" else trainer.model
    if config.output.out:
        folder = RunDir(config.output.out)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_config(config, run.generator.versions())
        trained.save_pretrained(str(folder.final))
        run.tokenizer.save_pretrained(str(folder.final))
        folder.metrics_file.unlink(missing_ok=True)
        folder.append_metrics(*records)
    return records


def _ready_for_generation(model: Any) -> None:
    """Back to inference as zo-llm generates: TRL leaves the model training, with gradient
    checkpointing on and the KV cache off."""
    if getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    model.config.use_cache = True
    model.eval()
    model.requires_grad_(False)


def _heldout(run: Any, step: int, samples: int, seconds: float) -> dict[str, Any]:
    metrics, _ = evaluate_heldout(run.generator, run.task, run.eval_examples, scorer=run.scorer)
    return {"type": "eval", "iteration": step, "split": "eval", **metrics,
            "time": seconds, "samples": samples}  # fmt: skip


def _grpo_config(trl: Any, config: Any, settings: GRPOSettings, steps: int, out: str) -> Any:
    on_cpu = str(getattr(config.model, "device", "auto")) == "cpu" or not _cuda()
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
