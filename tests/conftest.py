"""Shared fixtures: tiny causal LMs built from a config, never downloaded."""

from __future__ import annotations

import os
import string

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tests may run side by side on few cores


#: metrics.jsonl fields that measure the machine, not the run: two equal runs differ in them;
#: and the work counts, which depend on how members are batched and where they run.
MACHINE_FIELDS = ("time", "iteration_seconds", "eval_seconds", "peak_memory_mb", "worker_bytes",
                  "generated_tokens", "forward_passes", "backward_passes")  # fmt: skip


def run_numbers(records):
    """Metrics records without :data:`MACHINE_FIELDS`: what must be equal between equal runs."""
    return [{k: v for k, v in r.items() if k not in MACHINE_FIELDS} for r in records]


def char_tokenizer():
    """A character-level fast tokenizer (printable ASCII) with <pad>, <s>, </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + list(string.printable))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )


def tiny_model(vocab_size: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A 2-layer Llama with hidden size 32 (~30k parameters)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(dtype)
    model.eval()
    model.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def tokenizer():
    return char_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_model(len(tokenizer))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer):
    """A tiny model saved as a save_pretrained folder with its tokenizer."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_char_task(char: str = "a", size: int = 16):
    from zo_llm.tasks.base import Task

    class TargetCharTask(Task):
        """Reward: fraction of generated characters equal to a target character."""

        def examples(self, split):
            offset = 0 if split == "train" else 1000
            return [{"text": f"{i + offset} {i * 7 % 13}:"} for i in range(size)]

        def prompt(self, example):
            return example["text"]

        def reward(self, example, completion):
            return completion.count(char) / max(len(completion), 1)

    return TargetCharTask()


@pytest.fixture
def char_task():
    return make_char_task()
