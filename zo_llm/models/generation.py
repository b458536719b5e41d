"""Batched, left-padded generation that returns the completions only.

Rewards must see what the model wrote, never the prompt it was given, so the
prompt tokens are cut off before decoding. Greedy decoding is the default for
training: then every difference between members comes from their parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from ..tasks.base import ChatPrompt, Prompt


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> tuple[str, bool]:
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


class TextGenerator:
    """Generates completions for many prompts in padded batches.

    Prompts are encoded once (:meth:`encode`) and reused for every member of a
    population; batches are formed from prompts of similar length so little
    compute goes to padding.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_new_tokens: int = 128,
        batch_size: int = 32,
        do_sample: bool = False,
        temperature: float = 1.0,
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} and batch_size={batch_size} must be >= 1"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        eos = model.generation_config.eos_token_id
        self.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
        )

    def encode(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Token ids of each prompt (chat-rendered prompts get no extra special tokens)."""
        encoded = []
        for prompt in prompts:
            text, rendered = render_prompt(self.tokenizer, prompt)
            encoded.append(self.tokenizer(text, add_special_tokens=not rendered)["input_ids"])
        return encoded

    @torch.no_grad()
    def generate(
        self,
        encoded: Sequence[list[int]],
        around_batch: Callable[[list[int]], AbstractContextManager[Any]] | None = None,
    ) -> list[str]:
        """Decoded completions, in the order of ``encoded``.

        Rows are generated in batches of at most ``batch_size``, shortest
        prompts first (less padding). ``around_batch(rows)``, if given, is
        entered around each batch with the indices (into ``encoded``) of its
        rows, in the order of the batch: a batched evaluator uses it to tell
        the space which member each row belongs to.
        """
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        completions: list[str] = [""] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            with around_batch(batch) if around_batch else contextlib.nullcontext():
                texts = self._generate_batch([encoded[i] for i in batch])
            for index, text in zip(batch, texts, strict=True):
                completions[index] = text
        return completions

    def _generate_batch(self, batch: list[list[int]]) -> list[str]:
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
        attention = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device
        )
        output = self.model.generate(
            input_ids=input_ids, attention_mask=attention, generation_config=self.generation_config
        )
        return self.tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
