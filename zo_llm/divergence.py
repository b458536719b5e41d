"""How far a fine-tuned model has moved from its base: KL on the held-out prompts.

A reward can be hacked (conciseness: answers of the right length that are
wrong); the distance from the base model shows how much the model changed to
earn it. Qiu et al. 2025 report KL(fine-tuned || base) next to the reward.

The estimate: the fine-tuned model completes each prompt greedily; at every
generated token (up to and including the end of sequence), the exact KL
between the two models' next-token distributions is summed over the
vocabulary. ``kl`` is the mean over all generated tokens, ``kl_per_sequence``
the mean over prompts of each completion's sum.

What it costs: the fine-tuned model's distributions are the logits its own
generation produced (no second forward), and the reference is asked for
logits at the completion positions only (``logits_to_keep``), so the prompt
positions never meet the vocabulary-sized head: one generation and one
forward of the reference, where a prompt-length x vocabulary log-softmax per
model used to be.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["kl_from_reference"]


@torch.no_grad()
def kl_from_reference(
    model: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer: Any,
    encoded: Sequence[list[int]],
    generation_config: Any,
    batch_size: int = 16,
) -> dict[str, float]:
    """Per-token KL(model || reference) on ``model``'s greedy completions of ``encoded`` prompts.

    ``generation_config`` is the greedy decoding of the completions (``max_new_tokens``,
    end of sequence). Both models must share ``tokenizer``'s vocabulary. Returns ``kl``
    (nats per generated token), ``kl_per_sequence`` and ``kl_tokens`` (tokens counted).
    """
    eos = generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    total, tokens, sequences = 0.0, 0, []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        width = max(len(ids) for ids in batch)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch], device=model.device)
        prompt_mask = torch.tensor(
            [[0] * (width - len(x)) + [1] * len(x) for x in batch], device=model.device
        )
        generated = model.generate(
            input_ids=ids,
            attention_mask=prompt_mask,
            generation_config=generation_config,
            output_logits=True,
            return_dict_in_generate=True,
        )
        output = generated.sequences
        new_mask = _completion_mask(output[:, width:], eos_ids)
        mask = torch.cat([prompt_mask, new_mask], dim=1)
        log_p = torch.log_softmax(torch.stack(generated.logits, dim=1).float(), dim=-1)
        log_q = _next_token_log_probs(reference, output, mask, keep=new_mask.shape[1])
        per_token = (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0) * new_mask
        sequences += per_token.sum(-1).tolist()
        total += float(per_token.sum())
        tokens += int(new_mask.sum())
    return {
        "kl": total / tokens if tokens else float("nan"),
        "kl_per_sequence": sum(sequences) / len(sequences) if sequences else float("nan"),
        "kl_tokens": float(tokens),
    }


def _completion_mask(new: torch.Tensor, eos_ids: set[int]) -> torch.Tensor:
    """1 for generated tokens up to and including the first end-of-sequence, 0 after it."""
    if not eos_ids:
        return torch.ones_like(new)
    is_eos = torch.zeros_like(new, dtype=torch.bool)
    for token in eos_ids:
        is_eos |= new == token
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~after_eos).long()


def _next_token_log_probs(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, keep: int
) -> torch.Tensor:
    """Log-probabilities of the next token at the ``keep`` positions before the last (float32):
    those that predict the last ``keep`` tokens."""
    device = ids.device
    ids, mask = ids.to(model.device), mask.to(model.device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)  # left padding: positions start at 0
    inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
    try:
        logits = model(**inputs, logits_to_keep=keep + 1).logits
    except TypeError:  # a model whose forward computes every position's logits
        logits = model(**inputs).logits[:, -(keep + 1) :]
    return torch.log_softmax(logits[:, :-1].float(), dim=-1).to(device)
