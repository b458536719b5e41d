"""Builds ``zo-tiny``: the small Countdown model shipped with zo-llm, deterministically.

The model is a ~1M-parameter Llama with a byte-level BPE tokenizer, trained
from scratch on a synthetic corpus of Countdown problems (the task's own
prompt, a worked line of arithmetic, and the answer), and stopped part of the
way, so that a gradient-free fine-tuner has room to improve it.

Room to improve, on purpose: in the corpus the answer is given in the
``<answer> ... </answer>`` tags the task's reward asks for only in a share
(``--tagged``) of the examples; the others state it as ``The answer is ...``.
The base model therefore often knows an answer but does not say it the way
the reward counts, as an instruction-tuned model often half-follows a format.
ES has to find that out from the reward alone.

    python scripts/build_tiny_model.py --out zo_llm/assets/zo-tiny

The defaults are the shipped model's settings (about 25 minutes on one CPU
thread). Everything is seeded: the same settings rebuild the same weights on
the same torch version and CPU (checked: a rebuild gave a byte-identical
model.safetensors and tokenizer.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from zo_llm.components import build_task
from zo_llm.evaluation import evaluate_task
from zo_llm.generation import HFGenerator
from zo_llm.tasks.countdown import CountdownTask


@dataclass
class BuildSettings:
    seed: int = 1234
    problems: int = 20000
    tagged: float = 0.5
    vocab_size: int = 512
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 384
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    threads: int = 1


def worked_solution(numbers: list[int], rng: random.Random) -> tuple[int, str, str]:
    """Target, the arithmetic steps as text, and the equation, built together."""
    terms = [(n, str(n)) for n in numbers]
    steps = []
    while len(terms) > 1:
        rng.shuffle(terms)
        (a, a_expr), (b, b_expr) = terms.pop(), terms.pop()
        for op in rng.sample("+-*/", 4):
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if a % b == 0 else 0}[op]
            if value > 0:
                steps.append(f"{a} {op} {b} = {value}")
                terms.append((value, f"({a_expr} {op} {b_expr})"))
                break
    value, expr = terms[0]
    return value, ", ".join(steps), expr[1:-1] if expr.startswith("(") else expr


def corpus(task: CountdownTask, settings: BuildSettings) -> list[tuple[str, str]]:
    """(prompt, completion) pairs on problems that are in neither the train nor the eval split."""
    held = {
        (tuple(sorted(e["numbers"])), e["target"])
        for s in ("train", "eval")
        for e in task.examples(s)
    }
    config = task.config
    rng = random.Random(settings.seed)
    pairs = []
    while len(pairs) < settings.problems:
        numbers = [
            rng.randint(1, config.max_number)
            for _ in range(rng.randint(config.min_numbers, config.max_numbers))
        ]
        target, steps, equation = worked_solution(numbers, rng)
        if target > config.max_target or (tuple(sorted(numbers)), target) in held:
            continue
        prompt = task.prompt_text({"numbers": numbers, "target": target})
        if rng.random() < settings.tagged:
            completion = f" {steps} </think>\n<answer> {equation} </answer>"
        else:
            completion = f" {steps} </think>\nThe answer is {equation}."
        pairs.append((prompt, completion))
    return pairs


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        model_max_length=512,
    )


def build_model(tokenizer, settings: BuildSettings):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        num_key_value_heads=settings.heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)


def batches(pairs, tokenizer, settings: BuildSettings):
    """Endless shuffled batches; the loss covers the completion (and EOS) only."""
    encoded = []
    for prompt, completion in pairs:
        p = tokenizer(prompt)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        encoded.append((p + c, [-100] * len(p) + c))
    rng = random.Random(settings.seed + 1)
    while True:
        rng.shuffle(encoded)
        for start in range(0, len(encoded) - settings.batch_size + 1, settings.batch_size):
            chunk = encoded[start : start + settings.batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = [x + [tokenizer.pad_token_id] * (width - len(x)) for x, _ in chunk]
            labels = [y + [-100] * (width - len(y)) for _, y in chunk]
            mask = [[1] * len(x) + [0] * (width - len(x)) for x, _ in chunk]
            yield torch.tensor(ids), torch.tensor(labels), torch.tensor(mask)


def train(model, pairs, tokenizer, settings: BuildSettings) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)
    warmup = max(1, settings.steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (settings.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    start = time.time()
    for step, (ids, labels, mask) in zip(
        range(settings.steps), batches(pairs, tokenizer, settings), strict=False
    ):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == settings.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - start:.0f}s", flush=True)
    model.eval()


def base_scores(model, tokenizer, task: CountdownTask, max_new_tokens: int) -> dict:
    generator = HFGenerator(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=64)
    scores = {}
    for split in ("train", "eval"):
        metrics, completions = evaluate_task(generator, task, list(task.examples(split)))
        scores[split] = {k: round(v, 4) for k, v in metrics.items()}
    scores["example_completion"] = completions[0]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    for name, value in asdict(BuildSettings()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--task", default="countdown-easy", help="a countdown task name")
    parser.add_argument(
        "--task-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="countdown option for the problems (default: the task's defaults)",
    )
    args = parser.parse_args()
    settings = BuildSettings(**{k: getattr(args, k) for k in asdict(BuildSettings())})
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)

    options = dict(pair.split("=", 1) for pair in args.task_opt)
    task = build_task(args.task, options)
    pairs = corpus(task, settings)
    tokenizer = build_tokenizer([p + c for p, c in pairs[:5000]], settings.vocab_size)
    model = build_model(tokenizer, settings)
    print(
        f"{model.num_parameters() / 1e6:.2f}M parameters, vocab {len(tokenizer)}, "
        f"prompt {len(tokenizer(pairs[0][0])['input_ids'])} tokens",
        flush=True,
    )
    train(model, pairs, tokenizer, settings)
    model.requires_grad_(False)
    scores = base_scores(model, tokenizer, task, args.max_new_tokens)
    print(json.dumps(scores, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    record = {
        "settings": asdict(settings),
        "task": args.task,
        "task_options": options,
        "max_new_tokens": args.max_new_tokens,
        "torch": torch.__version__,
        "parameters": model.num_parameters(),
        "base_scores": scores,
        "split_sizes": {split: len(task.examples(split)) for split in ("train", "eval")},
    }
    (args.out / "build.json").write_text(json.dumps(record, indent=2))
    write_model_card(args.out, record)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_model_card(folder: Path, record: dict) -> None:
    """README.md of the model folder: what it is, how it was built, how good it is."""
    settings, scores = record["settings"], record["base_scores"]
    options = f"--task {record['task']}" + "".join(
        f" --task-opt {k}={v}" for k, v in record["task_options"].items()
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
    lines = [
        "# zo-tiny",
        "",
        f"A {record['parameters'] / 1e6:.2f}M-parameter Llama (byte-level BPE tokenizer, "
        f"{settings['vocab_size']} tokens) pre-trained from scratch, part of the way, on a "
        "synthetic Countdown corpus by `scripts/build_tiny_model.py`. It is zo-llm's default "
        "model: small enough for ES to visibly improve it on a laptop CPU in minutes.",
        "",
        f"In the corpus, {settings['tagged']:.0%} of the answers use the `<answer>` tags the "
        "Countdown reward asks for; the rest say `The answer is ...`. So the base model often "
        "knows an answer but does not give it the way the reward counts: there is room for a "
        "gradient-free fine-tuner to improve it, from the reward alone.",
        "",
        "Load it with plain transformers: "
        "`AutoModelForCausalLM.from_pretrained(folder)`, or `--model zo-tiny` in zo-llm.",
        "",
        "## Base scores (greedy, "
        f"{record['max_new_tokens']} new tokens, task `{record['task']}`, "
        f"{record['split_sizes']['train']} train / {record['split_sizes']['eval']} held-out "
        "problems)",
        "",
        "| split | accuracy | reward | format |",
        "|---|---|---|---|",
        *(
            f"| {split} | {scores[split]['accuracy']} | {scores[split]['reward']} | "
            f"{scores[split]['format']} |"
            for split in ("train", "eval")
        ),
        "",
        "What `zo-llm train` (its defaults) makes of it, per seed, is measured by "
        "`python benchmarks/default_run.py --seeds 0,1,2`; zo-llm's README has the table.",
        "",
        "## Build settings",
        "",
        "| setting | value |",
        "|---|---|",
        rows,
        "",
        f"Rebuild (torch {record['torch']}; deterministic on the same CPU and torch version, "
        f"the rebuilt `model.safetensors` has sha256 `{_sha256(folder / 'model.safetensors')}`):",
        "",
        "```",
        "python scripts/build_tiny_model.py --out zo_llm/assets/zo-tiny "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items())
        + f" {options}",
        "```",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
