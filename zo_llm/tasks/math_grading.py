"""Math answers graded by math-verify: ``1/2``, ``0.5`` and ``\\frac{1}{2}`` score alike.

Why: TRL and open RL recipes grade math with math-verify, which parses LaTeX
and plain expressions and compares them symbolically; a number-only grader
scores ``\\frac{1}{2}`` against ``0.5`` as wrong. ``pip install 'zo-llm[math]'``.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

INSTALL = "pip install 'zo-llm[math]'"


def require_math_verify(owner: str = "") -> None:
    """Refuses a missing math-verify with the install command, without importing it."""
    if importlib.util.find_spec("math_verify") is None:
        raise ValueError(f"{owner}reward='math' needs math_verify: {INSTALL}")


def math_equal(completion: str, answer: Any) -> float:
    """1.0 when the completion's answer is mathematically ``answer`` (``\\boxed{}``
    preferred where given), else 0.0.

    math-verify's own alarm-based time limits are off (they need the main thread);
    the run's reward time limit (``--reward-timeout``; 0: none) bounds the call, and
    their warning that they are off is left unsaid (it would come at every call).
    """
    from math_verify import parse, verify

    for module in ("parser", "grader"):
        logging.getLogger(f"math_verify.{module}").setLevel(logging.ERROR)
    gold = parse(str(answer), parsing_timeout=None)
    predicted = parse(completion, parsing_timeout=None)
    return float(bool(gold) and bool(predicted) and verify(gold, predicted, timeout_seconds=None))
