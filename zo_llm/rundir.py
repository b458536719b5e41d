"""A run folder: the one place that knows its files.

::

    run_config.json   the resolved config (every component's options) and the zo-llm version
    metrics.jsonl     one JSON object per iteration and per evaluation
    tensorboard/      the same numbers as TensorBoard events
    checkpoint.pt     the latest checkpoint, replaced atomically
    final/            the trained model, a save_pretrained folder with its tokenizer
    wandb_id, wandb/  with --wandb-project: the W&B run's id and its local files

The runner writes through :class:`RunDir`; ``zo-llm eval``, ``bench`` and
``resume`` read through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .config import RunConfig

CONFIG_FILE = "run_config.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"


class RunDir:
    """The files of one run folder (which need not exist yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def final(self) -> Path:
        return self.path / FINAL_DIR

    def holds_run(self) -> bool:
        return self.config_file.exists()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_file.exists()

    # --- config -----------------------------------------------------------

    def write_config(self, config: RunConfig) -> None:
        """Writes ``run_config.json`` atomically: the config in full and who wrote it."""
        self.path.mkdir(parents=True, exist_ok=True)
        document = {"zo_llm_version": __version__, "config": config.to_dict()}
        _atomic_write_text(self.config_file, json.dumps(document, indent=2))

    def read_document(self) -> dict[str, Any]:
        if not self.holds_run():
            raise FileNotFoundError(f"{self.path} is not a zo-llm run folder (no {CONFIG_FILE})")
        try:
            return json.loads(self.config_file.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.config_file} is not valid JSON ({error})") from None

    def read_config(self) -> dict[str, Any]:
        """The saved config in the nested spelling, a layer for :func:`zo_llm.config.resolve`.

        Runs written before zo-llm 0.3 saved flat settings; they are nested here.
        """
        from .config import nest

        config = self.read_document()["config"]
        if all(isinstance(value, dict) for value in config.values()):
            return config
        return nest(config, where=str(self.config_file))

    def made_by(self) -> str | None:
        """The zo-llm version that wrote the run."""
        return self.read_document().get("zo_llm_version")

    # --- checkpoints --------------------------------------------------------

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Writes ``checkpoint.pt`` atomically: a crash mid-write leaves the previous one valid."""
        import torch

        tmp = self.checkpoint_file.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_file)

    def load_checkpoint(self) -> dict[str, Any]:
        import torch

        if not self.has_checkpoint():
            raise FileNotFoundError(f"{self.path} has no {CHECKPOINT_FILE}; nothing to resume")
        return torch.load(self.checkpoint_file, weights_only=True)

    # --- metrics ------------------------------------------------------------

    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (none if it does not exist yet)."""
        if not self.metrics_file.exists():
            return []
        return read_metrics(self.metrics_file)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
