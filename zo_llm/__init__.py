"""zo-llm: fine-tune language models without gradients.

Three registries, composed by one generic runner:

- ``STRATEGIES``: how candidates are proposed and rewards turned into steps (``es``, ...);
- ``PARAMETRIZATIONS``: which numbers of the model are searched (``full``, ...);
- ``TASKS``: data, prompts and rewards (``countdown``, ...).

Quick start::

    import zo_llm
    exp = zo_llm.train(model="path/or/hub-id", task="countdown", iterations=20, out="runs/cd")

Any strategy also maximises a plain Python function of a vector::

    result = zo_llm.maximize(lambda x: -float((x**2).sum()), [1.0, 2.0], strategy="cma-es",
                             iterations=50)

Names are imported on first use (as peft's optional backends are), so ``import zo_llm``
and the ``zo-llm`` command start without loading torch or transformers.
"""

from __future__ import annotations

from .lazy import lazy_exports
from .version import __version__

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "BlackBoxResult": "blackbox",
    "maximize": "blackbox",
    "RunConfig": "config",
    "resolve": "config",
    "kl_from_reference": "divergence",
    "BatchedEvaluator": "evaluation",
    "Evaluator": "evaluation",
    "SequentialEvaluator": "evaluation",
    "evaluate_heldout": "evaluation",
    "evaluate_sampled": "evaluation",
    "evaluate_task": "evaluation",
    "CallbackHook": "hooks",
    "Hook": "hooks",
    "Run": "assembly",
    "build_run": "assembly",
    "IterationResult": "iteration",
    "run_iteration": "iteration",
    "GENERATORS": "generation",
    "Generator": "generation",
    "HFGenerator": "generation",
    "load_model": "models",
    "PARAMETRIZATIONS": "parametrizations",
    "FullConfig": "parametrizations",
    "FullWeights": "parametrizations",
    "LoraSpace": "parametrizations",
    "LoraSpaceConfig": "parametrizations",
    "LowRankConfig": "parametrizations",
    "LowRankWeights": "parametrizations",
    "Parametrization": "parametrizations",
    "SVDConfig": "parametrizations",
    "SVDSpace": "parametrizations",
    "TensorConfig": "parametrizations",
    "TensorSpace": "parametrizations",
    "Registry": "registry",
    "UnknownNameError": "registry",
    "RunDir": "rundir",
    "read_metrics": "rundir",
    "Experiment": "runner",
    "RunInterrupted": "errors",
    "TrainingDiverged": "errors",
    "resume": "runner",
    "train": "runner",
    "CEM": "strategies",
    "CMAES": "strategies",
    "ESSAM": "strategies",
    "PGPE": "strategies",
    "SNES": "strategies",
    "STRATEGIES": "strategies",
    "XNES": "strategies",
    "Candidate": "strategies",
    "CEMConfig": "strategies",
    "CMAESConfig": "strategies",
    "ESConfig": "strategies",
    "ESSAMConfig": "strategies",
    "IncompatibleSpaceError": "strategies",
    "MeZO": "strategies",
    "MeZOConfig": "strategies",
    "OpenAIES": "strategies",
    "PGPEConfig": "strategies",
    "SNESConfig": "strategies",
    "Strategy": "strategies",
    "VectorCandidate": "strategies",
    "XNESConfig": "strategies",
    "TASKS": "tasks",
    "ChatPrompt": "tasks",
    "ConcisenessTask": "tasks",
    "CountdownConfig": "tasks",
    "CountdownTask": "tasks",
    "DataTask": "tasks",
    "FunctionTask": "tasks",
    "GSM8KTask": "tasks",
    "Task": "tasks",
    "make_task": "tasks",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
