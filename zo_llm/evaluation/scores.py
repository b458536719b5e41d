"""What scoring one round returns: every reward of every candidate, and the failures (a leaf)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fitness import member_means


@dataclass
class Scores:
    """The rewards of one round: candidates x prompts (NaN where a reward failed).

    ``failures`` counts the completion rewards that raised or were not finite
    (see the reward policy in :mod:`zo_llm.evaluation`). The whole matrix is
    what the strategy is told (its ``shaping`` may look at each prompt); the
    candidates' mean rewards, :attr:`rewards`, are what the run logs. A
    function of a vector (:func:`zo_llm.maximize`) has one prompt.
    """

    per_prompt: np.ndarray
    failures: int = 0

    @property
    def rewards(self) -> np.ndarray:
        """Each candidate's mean finite reward (NaN for one whose every reward failed)."""
        return member_means(self.per_prompt)
