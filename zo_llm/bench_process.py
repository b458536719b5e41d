"""One bench run in its own process: its peak memory is its own, and a crash stays contained.

A run is a zo-llm training (started, or resumed from its checkpoint) or, for
a ``grpo`` entry, the GRPO baseline (:mod:`zo_llm.baselines.grpo`), which
keeps no checkpoint: an interrupted one starts again.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import shutil
import sys
from pathlib import Path
from typing import Any

from . import config as run_config
from .baselines.settings import GRPOSettings
from .config import RunConfig


def run_in_subprocess(config: RunConfig, resume: bool, grpo: GRPOSettings | None = None) -> None:
    """Runs ``config`` (with ``grpo``: the GRPO baseline on its budget) in a fresh process.

    Raises:
      RuntimeError: the run failed; its message, or how the process ended.
    """
    folder = Path(config.output.out)
    if not resume and folder.exists():
        shutil.rmtree(folder)  # started but never checkpointed: nothing to keep
    context = multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    settings = dataclasses.asdict(grpo) if grpo is not None else None
    process = context.Process(target=_run, args=(config.to_dict(), resume, settings, errors))
    process.start()
    process.join()
    if process.exitcode != 0:
        if not errors.empty():
            reason = errors.get()
        elif process.exitcode < 0:
            reason = f"killed by signal {-process.exitcode}"
        else:
            reason = f"exit code {process.exitcode}; see the message above"
        raise RuntimeError(
            f"bench run {folder.name} failed: {reason}. Fix it and run the bench again: "
            "finished runs are kept"
        )


def _run(
    nested: dict[str, Any], resume: bool, grpo: dict[str, Any] | None, errors: Any = None
) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the bench reports per run; load/save bars are noise
    try:
        config = run_config.resolve(nested)
        if grpo is not None:
            from .baselines.grpo import train_grpo

            train_grpo(config, GRPOSettings(**grpo), config.loop.max_samples)
        elif resume:
            from .runner import resume as resume_run

            resume_run(config.output.out, iterations=config.loop.iterations, progress=False)
        else:
            from .runner import Experiment

            Experiment(config).run()
    except (ValueError, FileNotFoundError, OSError, KeyError) as error:
        # a user's error (a setting, a file): its message says it all, no traceback
        if errors is not None:
            errors.put(f"{type(error).__name__}: {str(error)[:4000]}")
        sys.exit(1)
    except Exception as error:
        if errors is not None:
            errors.put(f"{type(error).__name__}: {str(error)[:4000]} (traceback above)")
        raise
