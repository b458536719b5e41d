"""The generation seam: what evaluators and held-out evaluation ask of a backend.

A :class:`Generator` turns prompts into completions for the model as it is
now (the parametrization perturbs the model in place, or hooks its layers;
the generator only generates). It is chosen by the model section's
``backend`` through :data:`GENERATORS`, so a second backend is one module and
one registry row. This module imports no heavy library: a run config checks
its backend's name before anything loads.

Rewards must see what the model wrote, never the prompt it was given, so a
generator returns completions only. Greedy decoding is the default for
training: then every difference between members comes from their parameters.
Stop strings end a completion where its answer ends: a few-shot prompt's model
goes on to write the next question, and a reward that reads the last number
would score that instead.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from ..registry import Registry
from ..tasks.base import ChatPrompt, Prompt, Task

#: Model settings only an engine reads; a backend lists those it does (engine_settings).
ENGINE_SETTINGS = ("max_model_len", "kv_cache_gib", "prefix_caching", "gpu_memory_utilization")
#: Called with the rows of each batch once it is generated (a progress bar's feed).
Progress = Callable[[int], None]
#: Entered around each batch of :meth:`Generator.generate_blocks` with the blocks it holds.
AroundBatch = Callable[[range], AbstractContextManager[Any]]


def stop_strings(setting: str | None, task: Task) -> tuple[str, ...]:
    """The stop strings of a run: ``setting`` (``--stop``) if given, else the task's own.

    ``setting`` understands backslash escapes (``"\\n"`` is a newline), as a shell
    flag cannot hold a newline; ``""`` means none.
    """
    if setting is None:
        return tuple(task.stop)
    text = setting.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return (text,) if text else ()


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of ``stops`` it contains (all of it if none)."""
    ends = [text.find(stop) for stop in stops if stop in text]
    return text[: min(ends)] if ends else text


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Token ids of each prompt (chat-rendered prompts get no extra special tokens)."""
    encoded = []
    for prompt in prompts:
        text, rendered = render_prompt(tokenizer, prompt)
        encoded.append(tokenizer(text, add_special_tokens=not rendered)["input_ids"])
    return encoded


def render_prompt(tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
    """Prompt text and whether it is already chat-rendered (special tokens included).

    Chat messages go through the tokenizer's chat template when it has one;
    without one a :class:`ChatPrompt` falls back to its plain text, other
    messages have their contents joined.
    """
    if isinstance(prompt, str):
        return prompt, False
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            list(prompt), tokenize=False, add_generation_prompt=True
        )
        return text, True
    if isinstance(prompt, ChatPrompt):
        return prompt.text, False
    return "\n".join(message["content"] for message in prompt), False


class Generator(ABC):
    """Completions of prompts by the model as it is now; one backend of :data:`GENERATORS`.

    Prompts are prepared once (:meth:`prepare`: tokenised, for HF) and reused
    for every member of a population. ``stop`` holds the stop strings every
    completion is cut at.
    """

    name: ClassVar[str] = "generator"  # set by the registry
    #: Whether the model's forward runs in this process, where a space's hooks see it
    #: (the batched evaluator adds each member's terms there).
    runs_forward_hooks: ClassVar[bool] = True
    #: The model section's engine settings (:data:`ENGINE_SETTINGS`) this
    #: backend reads; the config refuses the others when set.
    engine_settings: ClassVar[tuple[str, ...]] = ()
    stop: tuple[str, ...] = ()
    _progress: Progress | None = None

    @classmethod
    def check(cls, settings: Any, space: type | None) -> None:
        """Refuses, before the model loads, what this backend cannot run: its own library
        missing, the model as the model section (``settings``) names it, or a space class
        (None: not known by name) it cannot move."""
        del settings, space

    @contextlib.contextmanager
    def stopping_at(self, stop: Sequence[str]) -> Iterator[None]:
        """Inside, completions end at ``stop`` instead of the run's stop strings (a probe
        task's own)."""
        kept, self.stop = self.stop, tuple(stop)
        try:
            yield
        finally:
            self.stop = kept

    def mirror(self, space: Any) -> Any:
        """The space the run uses: ``space`` itself, or one that also moves the backend's own
        copy of the weights (an engine's)."""
        return space

    @classmethod
    @abstractmethod
    def create(
        cls,
        model: Any,
        tokenizer: Any,
        settings: Any,
        rows: int,
        stop: Sequence[str],
        prompts: Sequence[Prompt] = (),
    ) -> Generator:
        """The backend for a run: its loaded model and tokenizer, the model section's
        settings (``max_new_tokens``...), ``rows`` per forward batch, the stop strings and
        every prompt the run generates from (an engine sizes its buffers from their lengths)."""

    @abstractmethod
    def render(self, prompt: Prompt) -> tuple[str, bool]:
        """The prompt's text as the model sees it, and whether a chat template made it."""

    @abstractmethod
    def prepare(self, prompts: Sequence[Prompt]) -> Any:
        """``prompts`` ready to generate from, as often as needed (opaque to the caller)."""

    def generate(self, prepared: Any) -> list[str]:
        """Greedy completions of ``prepared``, in its order."""
        return self.generate_blocks(prepared, 1)[0]

    @abstractmethod
    def generate_blocks(
        self, prepared: Any, blocks: int, around_batch: AroundBatch | None = None
    ) -> list[list[str]]:
        """``blocks`` sets of greedy completions of ``prepared`` as rows of shared batches.

        Why blocks: a batched evaluator runs every member of a population on
        the same prompts, each member a block of consecutive rows that its
        own terms are added to; ``around_batch(range)``, if given, is entered
        around each forward batch with the blocks it holds. Returns
        ``completions[block][prompt]``.
        """

    @abstractmethod
    def member_groups(self, prompts: int, blocks: int) -> list[range]:
        """The blocks that :meth:`generate_blocks` puts in the same batches, in order.

        A distributed evaluator sends each group to one worker, so that every
        batch holds the same rows as in a single process.
        """

    @abstractmethod
    def sample(self, prepared: Any, temperature: float, seed: int) -> list[str]:
        """Sampled completions of ``prepared`` at ``temperature``, the same for the same ``seed``;
        nothing else's random state is touched."""

    @abstractmethod
    def kl_from(self, reference: Any, prepared: Any) -> dict[str, float]:
        """Per-token KL(model || ``reference``) on the model's greedy completions of ``prepared``
        (``kl``, ``kl_per_sequence``, ``kl_tokens``; see :mod:`zo_llm.divergence`)."""

    @contextlib.contextmanager
    def reporting(self, progress: Progress) -> Iterator[None]:
        """Inside the block, ``progress(rows)`` is called after each generated batch."""
        previous, self._progress = self._progress, progress
        try:
            yield
        finally:
            self._progress = previous

    def report(self, rows: int) -> None:
        """Tells the active :meth:`reporting` callback that ``rows`` more rows are done."""
        if self._progress is not None:
            self._progress(rows)

    def versions(self) -> dict[str, str]:
        """The versions of what this backend generates with, recorded in the run folder."""
        return {}

    def close(self) -> None:  # noqa: B027 -- a backend that holds nothing releases nothing
        """Releases what the backend holds (engines, worker processes); nothing for HF."""


GENERATORS: Registry[type[Generator]] = Registry("generation backend")
