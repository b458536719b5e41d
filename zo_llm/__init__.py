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
"""

__version__ = "0.2.0"

from .blackbox import BlackBoxResult, maximize  # noqa: E402
from .divergence import kl_from_reference  # noqa: E402
from .evaluation import evaluate_heldout, evaluate_sampled, evaluate_task  # noqa: E402
from .logging import read_metrics  # noqa: E402
from .models import TextGenerator, load_model  # noqa: E402
from .parametrizations import (  # noqa: E402
    PARAMETRIZATIONS,
    FullConfig,
    FullWeights,
    LoraSpace,
    LoraSpaceConfig,
    Parametrization,
    SVDConfig,
    SVDSpace,
    TensorConfig,
    TensorSpace,
)
from .registry import Registry, UnknownNameError  # noqa: E402
from .runner import Experiment, TrainConfig, resume, train  # noqa: E402
from .strategies import (  # noqa: E402
    CEM,
    CMAES,
    ESSAM,
    PGPE,
    SNES,
    STRATEGIES,
    XNES,
    Candidate,
    CEMConfig,
    CMAESConfig,
    ESConfig,
    ESSAMConfig,
    IncompatibleSpaceError,
    MeZO,
    MeZOConfig,
    OpenAIES,
    PGPEConfig,
    SNESConfig,
    Strategy,
    VectorCandidate,
    XNESConfig,
)
from .tasks import (  # noqa: E402
    TASKS,
    ConcisenessTask,
    CountdownConfig,
    CountdownTask,
    FunctionTask,
    GSM8KTask,
    Task,
    make_task,
)

__all__ = [
    "CEM",
    "CMAES",
    "ESSAM",
    "PARAMETRIZATIONS",
    "PGPE",
    "SNES",
    "STRATEGIES",
    "TASKS",
    "XNES",
    "BlackBoxResult",
    "CEMConfig",
    "CMAESConfig",
    "Candidate",
    "ConcisenessTask",
    "CountdownConfig",
    "CountdownTask",
    "ESConfig",
    "ESSAMConfig",
    "Experiment",
    "FullConfig",
    "FullWeights",
    "FunctionTask",
    "GSM8KTask",
    "IncompatibleSpaceError",
    "LoraSpace",
    "LoraSpaceConfig",
    "MeZO",
    "MeZOConfig",
    "OpenAIES",
    "PGPEConfig",
    "Parametrization",
    "Registry",
    "SNESConfig",
    "SVDConfig",
    "SVDSpace",
    "Strategy",
    "Task",
    "TensorConfig",
    "TensorSpace",
    "TextGenerator",
    "TrainConfig",
    "UnknownNameError",
    "VectorCandidate",
    "XNESConfig",
    "evaluate_heldout",
    "evaluate_sampled",
    "evaluate_task",
    "kl_from_reference",
    "load_model",
    "make_task",
    "maximize",
    "read_metrics",
    "resume",
    "train",
]
