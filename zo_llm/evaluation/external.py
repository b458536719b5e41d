"""Rewards from elsewhere, added to the task's: a reward model and a reward server.

Why: users of this field bring rewards from outside their task code. TRL
takes a sequence-classification model as a reward; OpenRLHF posts batches
to a remote reward server. Each is a :class:`RewardSource` here, scoring a
whole batch at once (a model is batched on its device, a server gets one
request per batch), so neither goes through the per-completion reward
process of :mod:`zo_llm.evaluation.rewards`. The run's reward is the
weighted sum ``task_reward_weight * task + reward_model_weight * model +
reward_url_weight * server`` (:class:`~zo_llm.evaluation.rewards.RewardScorer`).

Failures follow the reward policy: a record whose source fails scores NaN,
each kind warned once (``reward server: HTTP 500``, ``reward server:
returned str``...), and an iteration whose rewards all fail stops the run.

The server protocol: ``POST`` of a JSON list of records ``{"prompt": ...,
"completion": ..., "example": {...}}`` (``prompt`` a string, or chat
messages); the answer is a JSON list of as many numbers (or ``{"rewards":
[...]}``). Connection errors are retried with backoff (0.5, 1, 2 s); each
request is bounded by the run's ``reward_timeout``.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from .rewards import Outcome, RewardSource, value_outcome

#: Seconds waited before each retry of a request that could not connect.
BACKOFF = (0.5, 1.0, 2.0)
#: Rows per forward pass of the reward model.
MODEL_BATCH = 32


class RewardServer(RewardSource):
    """Records POSTed as JSON, one number per record back (the module's protocol)."""

    name = "reward_url"

    def __init__(self, url: str, timeout: float | None) -> None:
        self.url = url
        self.timeout = timeout or None

    def score(self, prompts, completions, examples) -> list[Outcome]:
        records = [
            {"prompt": p, "completion": c, "example": e}
            for p, c, e in zip(prompts, completions, examples, strict=True)
        ]
        if not records:
            return []
        values = self._values(records)
        if isinstance(values, tuple):  # the whole batch failed: one outcome for each record
            return [values] * len(records)
        return [value_outcome(v, "reward server: ") for v in values]

    def _values(self, records: list[dict[str, Any]]) -> list[Any] | Outcome:
        """The numbers the server answers, or the failure of the whole request."""
        try:  # strict JSON: a NaN in an example is refused here, not sent
            body = json.dumps(records, default=str, allow_nan=False).encode()
        except (TypeError, ValueError) as error:
            return "reward server: records not JSON", str(error)
        try:
            answer = self._post(body)
        except TimeoutError:
            return "reward server: timed out", f"{self.url}, after {self.timeout} s"
        except urllib.error.HTTPError as error:
            return f"reward server: HTTP {error.code}", str(error.reason)
        except (OSError, http.client.HTTPException) as error:
            detail = f"{self.url}: {getattr(error, 'reason', error)}"
            return "reward server: connection failed", detail
        try:
            values = json.loads(answer)
        except ValueError:  # not JSON, or not text
            return "reward server: not JSON", answer[:80].decode(errors="replace")
        if isinstance(values, dict):
            values = values.get("rewards")
        if not isinstance(values, list) or len(values) != len(records):
            count = len(values) if isinstance(values, list) else type(values).__name__
            return "reward server: wrong count", f"{count} numbers for {len(records)} records"
        return values

    def _post(self, body: bytes) -> bytes:
        """The server's answer. A refused or broken connection and a busy server (HTTP 429,
        5xx) are retried after each wait of :data:`BACKOFF`; a read slower than the time
        limit is not (the server is working, and another try would wait as long)."""
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        for wait in BACKOFF:
            try:
                return self._send(request)
            except urllib.error.HTTPError as error:
                if error.code != 429 and error.code < 500:
                    raise
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError):
                pass
            time.sleep(wait)
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> bytes:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return response.read()


class RewardModel(RewardSource):
    """A sequence-classification model's score (one label) of prompt + completion, batched.

    The text scored: the conversation (the prompt's messages, the completion as
    the assistant's turn) through the reward model's chat template when it has
    one, else the prompt's text followed by the completion.
    """

    name = "reward_model"

    def __init__(self, source: str, device: Any) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer.truncation_side = "left"  # a long text keeps its end: the completion
        self.templated = bool(getattr(self.tokenizer, "chat_template", None))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(source).to(device)
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.eval()

    def text(self, prompt: Any, completion: str) -> str:
        if self.templated:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            turn = [{"role": "assistant", "content": completion}]
            return self.tokenizer.apply_chat_template(list(messages) + turn, tokenize=False)
        return (getattr(prompt, "text", None) or _plain(prompt)) + completion

    def score(self, prompts, completions, examples) -> list[Outcome]:
        import torch

        del examples
        texts = [self.text(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), MODEL_BATCH):
                batch = self.tokenizer(
                    texts[start : start + MODEL_BATCH],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    add_special_tokens=not self.templated,  # the template has its own
                ).to(self.model.device)
                scores += self.model(**batch).logits[:, 0].float().tolist()
        return [value_outcome(s, "reward model: ") for s in scores]

    def close(self) -> None:
        self.model = None


def _plain(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(message["content"] for message in prompt) + "\n"


def check_reward_sources(loop: Any) -> None:
    """Refuses, before the policy model loads, a reward model that is not a one-label
    classifier and a reward server that does not answer a connection."""
    if loop.reward_model is not None:
        check_reward_model(loop.reward_model)
    if loop.reward_url is not None:
        check_reward_url(loop.reward_url)


def check_reward_url(url: str) -> None:
    """Refuses a reward server that does not accept a connection (light: no torch needed,
    so the CLI asks it before anything heavy loads)."""
    parsed = urlparse(url)
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        socket.create_connection((parsed.hostname, port), timeout=5).close()
    except (OSError, ValueError) as error:
        raise ValueError(
            f"reward_url={url!r}: cannot connect ({error}); start the reward server or fix the URL"
        ) from None


def check_reward_model(source: str) -> None:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"reward_model={source!r}: no model config found ({str(error).splitlines()[0]}); "
            "give a folder saved by save_pretrained, or a hub id in the cache"
        ) from None
    architectures = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"reward_model={source!r} is a {', '.join(architectures) or 'model'}, not a "
            "sequence classifier: give an AutoModelForSequenceClassification folder "
            "(num_labels=1)"
        )
    if config.num_labels != 1:
        raise ValueError(
            f"reward_model={source!r} has {config.num_labels} labels; a reward model has one "
            "(num_labels=1): its one logit is the reward"
        )


def build_reward_sources(loop: Any, device: Any) -> list[tuple[RewardSource, float]]:
    """The run's reward sources with their weights (none without reward_model/reward_url)."""
    sources: list[tuple[RewardSource, float]] = []
    if loop.reward_model is not None:
        where = loop.reward_model_device or device
        sources.append((RewardModel(loop.reward_model, where), loop.reward_model_weight))
    if loop.reward_url is not None:
        sources.append((RewardServer(loop.reward_url, loop.reward_timeout), loop.reward_url_weight))
    return sources
