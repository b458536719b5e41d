"""Where a model comes from, checked without reading it: an alias, a hub id, a folder or a file.

Light (no torch): a run config checks its model's name with it, so a missing
folder or a folder without a tokenizer is refused before anything heavy loads.
"""

from __future__ import annotations

from pathlib import Path

from ..rundir import RunDir
from .aliases import ALIASES, resolve_alias

#: Files that hold a model's weights in a save_pretrained folder (any one will do).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: Files that hold a tokenizer's vocabulary (any one will do): the fast tokenizer's
#: ``tokenizer.json``, or a slow tokenizer's sentencepiece or BPE/WordPiece files.
VOCABULARY_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
)


def check_model_source(name: str) -> str:
    """The source ``name`` resolves to (an alias's folder or file, else ``name``), checked.

    Raises:
      FileNotFoundError: for a path that does not exist, or a folder that cannot
        be a saved model with its tokenizer (:func:`check_model_folder`).
    """
    source = resolve_alias(name)
    path = Path(source).expanduser()
    if _looks_like_path(source) and not path.exists():
        raise FileNotFoundError(
            f"model {source!r} does not exist; give a hub id, a local folder, a .gguf file "
            f"or an alias ({', '.join(ALIASES)})"
        )
    if path.is_dir():
        check_model_folder(path)
    return source


def check_model_folder(folder: str | Path) -> None:
    """Refuses a local folder that cannot be a saved model with its tokenizer.

    Only file names are looked at, so this runs before any weights are read.

    Raises:
      FileNotFoundError: naming the folder, what it lacks and how to add it: no
        ``config.json`` (or a zo-llm run folder, or a peft adapter, where
        ``final/`` or the base model was meant), no weights, or no tokenizer files.
    """
    folder = Path(folder).expanduser()
    have = {p.name for p in folder.iterdir()}
    if "config.json" not in have:
        run = RunDir(folder)
        if run.holds_run() and run.final.is_dir():
            hint = f"it is a zo-llm run folder; its trained model is {run.final}"
        elif gguf := sorted(name for name in have if name.endswith(".gguf")):
            hint = f"to load a GGUF model pass its file, {folder / gguf[0]}"
        elif "adapter_config.json" in have:
            hint = (
                "it holds a peft adapter, not a model; pass the run's final/ folder (the merged "
                "model) or load the base model and the adapter with PeftModel.from_pretrained"
            )
        else:
            hint = "it is not a saved model; save one there with model.save_pretrained(folder)"
        raise FileNotFoundError(f"model folder {folder} has no config.json: {hint}")
    if not have.intersection(WEIGHT_FILES) and not any(n.endswith(".safetensors") for n in have):
        raise FileNotFoundError(
            f"model folder {folder} has config.json but no weights (model.safetensors or "
            "pytorch_model.bin); save the model there with model.save_pretrained(folder)"
        )
    if not have.intersection(VOCABULARY_FILES):
        present = sorted(have.intersection({"tokenizer_config.json", "special_tokens_map.json"}))
        but = f" (only {', '.join(present)})" if present else ""
        raise FileNotFoundError(
            f"model folder {folder} has no tokenizer files{but}: it needs tokenizer.json and "
            "tokenizer_config.json (or a slow tokenizer's tokenizer.model / vocab.json and "
            "merges.txt). Save the tokenizer of the model it came from into it: "
            f"AutoTokenizer.from_pretrained(BASE).save_pretrained({str(folder)!r})"
        )


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or source.endswith(".gguf")
        or Path(source).exists()
    )
