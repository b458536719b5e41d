"""Size checks made before a model loads, from its architecture alone.

A vector strategy (CMA-ES, evotorch's searchers) holds explicit vectors and
refuses spaces larger than it can search; a space's size depends on the model
(LoRA's rank x (in + out) per adapted layer, one singular value per kept
direction). Building the model on the meta device from its config gives the
shapes in a second, so ``cma-es`` over the default ``lora`` of a 7B model fails
at once instead of after the weights are in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .components import component_class

if TYPE_CHECKING:
    from .config import RunConfig
    from .parametrizations.base import Parametrization


def check_space_size(config: RunConfig, space: Parametrization, model: Any = None) -> None:
    """Refuses ``space`` if the strategy cannot search its size on this model.

    Args:
      config: the run config (its strategy and model).
      space: the (unbound) space the run will search.
      model: an already loaded model, if the run was given one.

    Raises:
      IncompatibleSpaceError: naming the limit and the options that shrink the space.
    """
    strategy = component_class("strategy", config.strategy.name)
    if strategy is None or strategy.dim_limit(config.strategy.options) is None:
        return
    if model is None:
        from .models.loading import meta_model

        name = config.model.name
        model = meta_model(name) if name and not name.startswith("python:") else None
    dim = space.planned_dim(model) if model is not None else None
    if dim is not None:
        strategy.check_size(config.strategy.options, space, dim)
