"""Where a small model starts on reasoning-gym datasets: base held-out accuracy per setting.

A search needs a task the model gets sometimes right: well above 0 (something
to reward) and well below 1 (something to gain). This measures the base model
greedy on each candidate (dataset, settings, answer format, shots) and prints
a table, so a recipe's task is chosen from numbers.

    python benchmarks/reasoning_gym_start.py --model /tmp/smollm2
    python benchmarks/reasoning_gym_start.py --model /tmp/smollm2 --only products-1x2
"""

from __future__ import annotations

import argparse
import time

import zo_llm
from zo_llm.evaluation import evaluate_heldout

#: name -> (dataset, task options). Plain few-shot ("line", 3 shots) as arithmetic asks,
#: and reasoning-gym's own chat + <answer> tags for comparison.
CANDIDATES = {
    "chain_sum-3x1": ("chain_sum", {"settings": {"min_terms": 3, "max_terms": 3, "max_digits": 1}}),
    "chain_sum-2x2": (
        "chain_sum",
        {"settings": {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2}},
    ),
    "chain_sum": ("chain_sum", {}),
    "products-2x2": ("products", {"settings": {"min_digits": 2, "max_digits": 2}}),
    "products": ("products", {}),
    "basic_arithmetic": ("basic_arithmetic", {}),
    "letter_counting": ("letter_counting", {}),
    "simple_equations": ("simple_equations", {}),
}
FEW_SHOT = {"answer_format": "line", "shots": 3, "chat": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--eval-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="comma-separated candidate names")
    parser.add_argument("--tags", action="store_true", help="also reasoning-gym's chat + tags")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CANDIDATES)
    formats = [("few-shot line", FEW_SHOT, 12)]
    if args.tags:
        formats.append(("chat <answer>", {"answer_format": "tag", "chat": True}, 256))
    model = tokenizer = None
    print("| dataset | settings | format | base accuracy | answered | seconds |")
    print("|---|---|---|---|---|---|")
    for name in names:
        dataset, options = CANDIDATES[name]
        for label, prompt_options, tokens in formats:
            config = zo_llm.resolve({
                "model": args.model, "task": f"reasoning-gym:{dataset}", "threads": args.threads,
                "task_options": {**options, **prompt_options, "eval_size": args.eval_size},
                "max_new_tokens": tokens,
            })  # fmt: skip
            try:
                run = zo_llm.build_run(config, model=model, tokenizer=tokenizer, purpose="eval")
            except ValueError as error:  # too few distinct problems for the sizes, say
                print(f"| {dataset} | {options.get('settings')} | {label} | - | - | {error} |")
                continue
            model, tokenizer = run.model, run.tokenizer  # loaded once
            start = time.perf_counter()
            metrics, _ = evaluate_heldout(
                run.generator, run.task, run.eval_examples, scorer=run.scorer
            )
            seconds = time.perf_counter() - start
            run.close()
            settings = options.get("settings", {}) or "defaults"
            print(f"| {dataset} | {settings} | {label} | {metrics['accuracy']:.2f} | "
                  f"{metrics['answered']:.2f} | {seconds:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
