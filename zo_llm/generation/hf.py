"""The ``hf`` backend: transformers' ``generate``, batched and left-padded, completions only.

The prompt tokens are cut off before decoding, and a row stops growing at its
stop string, the text from it on cut off before scoring.

Reading the prompt is most of a short generation, and few-shot prompts are
mostly the same worked examples: a prefix that every prompt of a batch
shares is read once per member (:meth:`HFGenerator._shared_prefix`).

Imported with :mod:`zo_llm.generation` to register itself, so torch and
transformers are imported where used, not here.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

from ..lazy import no_grad, torch
from ..tasks.base import Prompt
from .base import GENERATORS, AroundBatch, Generator, cut_at_stop, encode_prompts, render_prompt


@GENERATORS.register("hf")
class HFGenerator(Generator):
    """Transformers' ``generate``: completions in padded batches of ``batch_size`` rows at most.

    Prompts are encoded once (:meth:`prepare`: their token ids) and reused for
    every member of a population; batches are formed from prompts of similar
    length so little compute goes to padding.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = 128,
        batch_size: int = 32,
        stop: Sequence[str] = (),
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} and batch_size={batch_size} must be >= 1"
            )
        from transformers import GenerationConfig

        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.stop = tuple(stop)
        eos = model.generation_config.eos_token_id
        self.generation_config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
            stop_strings=list(self.stop) or None,
        )
        self.forward_passes = 0
        model.register_forward_pre_hook(self._count_forward)

    def _count_forward(self, module: Any, args: Any) -> None:
        del module, args
        self.forward_passes += 1

    @classmethod
    def create(
        cls,
        model: Any,
        tokenizer: Any,
        settings: Any,
        rows: int,
        stop: Sequence[str],
        prompts: Sequence[Prompt] = (),
    ) -> HFGenerator:
        return cls(model, tokenizer, settings.max_new_tokens, rows, stop=stop)

    @contextlib.contextmanager
    def stopping_at(self, stop: Sequence[str]) -> Iterator[None]:
        """As the base, and the generation config's stop strings with it."""
        kept = self.generation_config
        self.generation_config = copy.deepcopy(kept)
        self.generation_config.stop_strings = list(stop) or None
        try:
            with super().stopping_at(stop):
                yield
        finally:
            self.generation_config = kept

    def render(self, prompt: Prompt) -> tuple[str, bool]:
        return render_prompt(self.tokenizer, prompt)

    def versions(self) -> dict[str, str]:
        import transformers

        return {"torch": torch.__version__, "transformers": transformers.__version__}

    def prepare(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Token ids of each prompt (chat-rendered prompts get no extra special tokens)."""
        return encode_prompts(self.tokenizer, prompts)

    def sample(self, prepared: list[list[int]], temperature: float, seed: int) -> list[str]:
        """Sampled completions; the seeding happens inside :func:`torch.random.fork_rng`, so the
        caller's global torch RNG state is left as it was."""
        greedy = self.generation_config
        self.generation_config = copy.deepcopy(greedy)
        self.generation_config.do_sample, self.generation_config.temperature = True, temperature
        device = self.model.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                return self.generate(prepared)
        finally:
            self.generation_config = greedy

    def kl_from(self, reference: Any, prepared: list[list[int]]) -> dict[str, float]:
        """As the base class says: up to ``max_new_tokens`` or the end of sequence, whatever
        the stop strings (the distance is the model's, not its answers')."""
        from ..divergence import kl_from_reference

        whole = copy.deepcopy(self.generation_config)
        whole.stop_strings = None
        return kl_from_reference(
            self.model, reference, self.tokenizer, prepared, whole, self.batch_size
        )

    @no_grad
    def generate_blocks(
        self, prepared: Sequence[list[int]], blocks: int, around_batch: AroundBatch | None = None
    ) -> list[list[str]]:
        """``blocks`` sets of completions of ``prepared`` (token ids), as rows of shared batches.

        A member's rows sit together so that its own low-rank terms are one
        batched matmul per layer (not a gather per row). Each batch holds
        whole blocks: ``k`` consecutive blocks times the same prompts,
        block-major, with ``k`` as large as ``batch_size`` rows allow (spread
        evenly over the batches); when the prompts alone exceed ``batch_size``
        a batch is one block's share of them. Prompts are sorted by length the
        same way in every block. ``around_batch(range)``, if given, is entered
        around each batch with the blocks it holds.

        Returns:
          ``completions[block][prompt]``, in the order of ``prepared``.
        """
        encoded = prepared
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        completions = [[""] * len(encoded) for _ in range(blocks)]
        for members, prompts in self._batches(len(order), blocks):
            rows = [encoded[i] for i in order[prompts.start : prompts.stop]]
            with around_batch(members) if around_batch else contextlib.nullcontext():
                texts = self._generate_batch(rows * len(members), len(members))
            self.report(len(texts))
            positions = order[prompts.start : prompts.stop]
            for offset, block in enumerate(members):
                block_texts = texts[offset * len(rows) : (offset + 1) * len(rows)]
                for index, text in zip(positions, block_texts, strict=True):
                    completions[block][index] = text
        return completions

    def member_groups(self, prompts: int, blocks: int) -> list[range]:
        groups: list[range] = []
        for members, _ in self._batches(prompts, blocks):
            if not groups or groups[-1] != members:
                groups.append(members)
        return groups

    def _batches(self, prompts: int, blocks: int) -> Iterator[tuple[range, range]]:
        """(blocks, prompt positions) of each batch, at most ``batch_size`` rows each."""
        if prompts == 0:
            return
        if prompts > self.batch_size:
            for block in range(blocks):
                for start in range(0, prompts, self.batch_size):
                    end = min(start + self.batch_size, prompts)
                    yield range(block, block + 1), range(start, end)
            return
        per_batch = self.batch_size // prompts
        batches = -(-blocks // per_batch)
        for index in range(batches):
            yield range(blocks * index // batches, blocks * (index + 1) // batches), range(prompts)

    def _generate_batch(self, batch: list[list[int]], blocks: int = 1) -> list[str]:
        """Completions of ``batch`` (``blocks`` blocks of the same prompts, block-major)."""
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
        attention = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device
        )
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=self.generation_config,
            tokenizer=self.tokenizer if self.stop else None,
            **self._shared_prefix(batch, blocks),
        )
        generated = output[:, width:]
        self.generated_tokens += int((generated != self.generation_config.pad_token_id).sum())
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [cut_at_stop(text, self.stop) for text in texts] if self.stop else texts

    def _shared_prefix(self, batch: list[list[int]], blocks: int) -> dict[str, Any]:
        """The key/value cache of the prompts' common first tokens, read once per block.

        Why: a few-shot prompt is mostly the same solved examples, and reading
        the prompt costs most of a short generation (16 prompts of 42 tokens
        against 5 new tokens each). The prefix is run as one row per block (a
        batched evaluator's member hooks see one row per member) and its cache
        repeated over the block's rows; ``generate`` then reads only the rest.
        Returns ``generate``'s cache argument, or nothing (read everything)
        unless every row has the same length (no padding) and a common prefix
        of at least :data:`MIN_SHARED_PREFIX` tokens.
        """
        rows = len(batch) // blocks
        if rows < 2 or len({len(ids) for ids in batch}) != 1:
            return {}
        shared = _common_prefix(batch[:rows], limit=len(batch[0]) - 1)  # one token left to read
        if shared < MIN_SHARED_PREFIX:
            return {}
        prefix = torch.tensor([batch[0][:shared]] * blocks, device=self.model.device)
        output = self.model(input_ids=prefix, use_cache=True)
        for name in ("cache", "past_key_values"):  # transformers 5, 4
            cache = output.get(name)
            if hasattr(cache, "batch_repeat_interleave"):
                cache.batch_repeat_interleave(rows)
                return {name: cache}
        return {}  # a model whose cache cannot be repeated (a state-space model, say)


#: Common prompt tokens below which a shared prefix is not worth its extra forward pass.
MIN_SHARED_PREFIX = 8


def _common_prefix(rows: Sequence[list[int]], limit: int) -> int:
    """Length of the longest token prefix that every row starts with (at most ``limit``)."""
    first = rows[0]
    length = min(limit, *(len(ids) for ids in rows))
    for ids in rows[1:]:
        while length and ids[:length] != first[:length]:
            length -= 1
    return length
