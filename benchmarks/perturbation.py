"""Cost and exactness of seeded perturbation on a real model, per dtype.

Prints one table row per dtype: time of one perturb+restore cycle and of a
population update, the share of elements that needed patching to restore
exactly, the extra memory of the patches (vs. a master copy, which costs the
weights' size), and the drift a plain ``add_``/``sub_`` round trip leaves.

    python benchmarks/perturbation.py --model PATH_OR_HUB_ID [--cycles 5] [--sigma 1e-3]

Without ``--model`` a ~7M-parameter Llama is built from a config.
"""

from __future__ import annotations

import argparse
import time

import torch

from zo_llm.models.loading import DTYPES, load_model
from zo_llm.parametrizations import FullWeights


def build_model(path: str | None, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    if path:  # an alias (zo-llm list), hub id, folder or .gguf file, on the CPU
        name = {v: k for k, v in DTYPES.items()}[dtype]
        model, _ = load_model(path, name, "cpu")
    else:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=8192,
            hidden_size=256,
            intermediate_size=768,
            num_hidden_layers=6,
            num_attention_heads=4,
        )
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval().requires_grad_(False)


def measure(model: torch.nn.Module, cycles: int, sigma: float, population: int) -> dict:
    space = FullWeights()
    space.bind(model)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    start = time.perf_counter()
    patched = patch_bytes = 0
    for seed in range(cycles):
        space.perturb(seed, sigma)
        patches = space._active[2]
        patched += sum(idx.numel() for idx, _ in patches)
        patch_bytes = max(
            patch_bytes,
            sum(i.numel() * i.element_size() + v.numel() * v.element_size() for i, v in patches),
        )
        space.unperturb()
    cycle_s = (time.perf_counter() - start) / cycles
    exact = all(torch.equal(p, original[n]) for n, p in model.named_parameters())

    drifted = 0
    for name, param in model.named_parameters():  # what plain add-then-subtract would leave
        eps = space.noise_tensors(0)[name].mul_(sigma)
        drifted += int((param.detach().clone().add_(eps).sub_(eps) != param).sum())

    start = time.perf_counter()
    space.apply_update([(seed, 1e-4) for seed in range(population)])
    update_s = time.perf_counter() - start
    return {
        "params_M": space.dim / 1e6,
        "cycle_s": cycle_s,
        "update_s": update_s,
        "patched_pct": 100 * patched / (cycles * space.dim),
        "exact": exact,
        "patch_MB": patch_bytes / 2**20,
        "master_copy_MB": weight_bytes / 2**20,
        "plain_drift_pct": 100 * drifted / space.dim,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="alias, hub id, folder or .gguf file (default: a 7M Llama from a config)"
    )
    parser.add_argument("--cycles", type=int, default=5, help="perturb+restore cycles timed")
    parser.add_argument("--sigma", type=float, default=1e-3)
    parser.add_argument("--population", type=int, default=30, help="seeds in the timed update")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    columns = [
        "dtype",
        "params_M",
        "cycle_s",
        "update_s",
        "patched_pct",
        "exact",
        "patch_MB",
        "master_copy_MB",
        "plain_drift_pct",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for name in args.dtypes.split(","):
        row = {
            "dtype": name,
            **measure(
                build_model(args.model, getattr(torch, name)),
                args.cycles,
                args.sigma,
                args.population,
            ),
        }
        print("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
