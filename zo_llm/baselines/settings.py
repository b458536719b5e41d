"""GRPO's own settings, light to import: a bench checks them before any run starts."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: What a GRPO run's config calls its strategy (and a bench entry names the baseline by).
GRPO = "grpo"
#: The spaces GRPO trains: every weight, or a peft LoRA adapter of the space's rank and targets.
GRPO_SPACES = ("full", "lora")
INSTALL = "pip install 'zo-llm[baseline]'"


@dataclass(frozen=True)
class GRPOSettings:
    """GRPO's own settings; the model, task, prompts and budget are the run config's.

    Defaults: groups of 4 completions (TRL's smallest recommended, so a
    budget buys many prompts), 4 prompts per step (16 completions, the
    ES recipes' 16 prompts per member), lr 1e-5 (ten times TRL's default: a
    CPU budget buys hundreds of steps, not thousands; a bench screens it),
    beta 0 (TRL's default: no reference model, no KL penalty), temperature 1
    (GRPO must sample: identical greedy samples give a group no spread).
    """

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
        if self.beta < 0 or not self.temperature > 0:
            raise ValueError(f"beta={self.beta} must be >= 0, temperature > 0")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], owner: str = "grpo") -> GRPOSettings:
        """From a bench entry's options; an unknown one is named with the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(
                f"{owner}: unknown option(s) {', '.join(unknown)}; grpo takes {', '.join(names)}"
            )
        return cls(**options)

    def completions_per_step(self) -> int:
        return self.completions * self.prompts_per_step

    def steps_for(self, completions: int) -> int:
        """Whole optimizer steps nearest to a budget of ``completions`` (at least one)."""
        return max(1, round(completions / self.completions_per_step()))


def saved_config(config: Any, settings: GRPOSettings) -> dict[str, Any]:
    """The nested run config a GRPO run's ``run_config.json`` holds: ``config``'s, its
    strategy section naming grpo with ``settings`` (what a kept run is compared by)."""
    return {**config.to_dict(), "strategy": {"name": GRPO, **dataclasses.asdict(settings)}}


def check_trl() -> None:
    """Refuses a missing TRL, with the install command, without importing anything."""
    if importlib.util.find_spec("trl") is None:
        raise ValueError(f"the grpo baseline needs TRL: {INSTALL}")
