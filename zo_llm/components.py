"""Components by name: registry lookups, option objects, pairings, and building them.

The run config (:mod:`zo_llm.config`) calls in here to turn names and option
dicts into checked option objects; the assembly (:mod:`zo_llm.assembly`) calls
in here to build the components themselves. A task may also be ``module:object`` (a user's code,
imported when the task is built) or a data file (the ``file`` task); a
component passed from Python as an object is recorded as ``python:Class`` and
must be passed again on resume.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import check_finite, make_config

if TYPE_CHECKING:
    from .parametrizations.base import Parametrization
    from .strategies.base import Strategy
    from .tasks.base import Task

OBJECT_PREFIX = "python:"


def registry(kind: str) -> Any:
    """The registry of ``kind`` ("strategy", "space" or "task"), importing its entries."""
    if kind == "strategy":
        from .strategies import STRATEGIES

        return STRATEGIES
    if kind == "space":
        from .parametrizations import PARAMETRIZATIONS

        return PARAMETRIZATIONS
    from .tasks import TASKS

    return TASKS


def task_reference(name: str, options: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """What a task name refers to: ``(registry name, options)``, or ``(None, options)``.

    None means ``module:object``, imported only when the task is built; a data
    file or folder is the ``file`` task with ``data=`` that path.
    """
    from .tasks.loading import BUILDERS as DATA_SUFFIXES
    from .tasks.reasoning_gym import PREFIX as REASONING_GYM

    options = dict(options or {})
    if name.startswith(REASONING_GYM):  # reasoning-gym:NAME, a dataset of that registry entry
        return REASONING_GYM[:-1], {**options, "dataset": name[len(REASONING_GYM) :]}
    if ":" in name and not name.startswith(OBJECT_PREFIX) and not Path(name).exists():
        return None, options
    if name not in registry("task") and (Path(name).suffix in DATA_SUFFIXES or Path(name).is_dir()):
        return "file", {**options, "data": name}
    return name, options


def component_class(kind: str, name: str) -> type | None:
    """The class a component name stands for; None for ``module:object`` and objects."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} {name!r} is not a name; give a registered name (zo-llm list)")
    if name.startswith(OBJECT_PREFIX):
        return None
    if kind == "task":
        registered, _ = task_reference(name, {})
        return None if registered is None else registry("task").get(registered)
    return registry(kind).get(name)


def translate_options(kind: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A strategy's options with the generic ``population``/``sigma``/``lr`` made its own."""
    cls = component_class(kind, name) if kind == "strategy" else None
    return cls.translate_options(options) if cls is not None else dict(options)


def resolve_options(kind: str, name: str, options: Any) -> Any:
    """The option object of component ``name``, checked; plain dicts where it cannot be known.

    Raises:
      ValueError: for an unknown name (listing the known ones) or option.
    """
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        cls = component_class(kind, name)
        if cls is None or isinstance(options, cls.config_class):
            return check_finite(options, f"{kind} {name!r}")
        options = dataclasses.asdict(options)
    cls = component_class(kind, name)
    if cls is None:
        return dict(options or {})
    if kind == "task":
        _, options = task_reference(name, options)
    options = translate_options(kind, name, dict(options or {}))
    owner = f"{'parametrization' if kind == 'space' else kind} {name!r}"
    try:
        return make_config(cls.config_class, options, owner)
    except TypeError as error:
        raise ValueError(f"{owner}: {error}") from None


def build_task(name: str, options: Any = None) -> Task:
    """A task by registry name, ``module:object`` (importable), or data file path.

    ``module:object`` names a :class:`Task` instance, a Task subclass (built
    from ``options``) or a factory called with ``options``; a path to a data
    file (or folder) is the ``file`` task with ``data=`` that path. Both record
    ``name`` as the task's ``source``, so a run's config rebuilds it on resume.
    """
    options = resolve_options("task", name, options)
    if name.startswith(OBJECT_PREFIX):
        raise ValueError(_object_message("task", name))
    registered, _ = task_reference(name, {})
    if registered is None:
        task = _import_task(name, options)
    else:
        task = registry("task").get(registered)(options)
        if registered == name:
            return task
    task.source = name
    return task


def user_code_error(what: str, error: Exception) -> ValueError:
    """One line on an exception raised in a user's code: what raised, where, and whose it is."""
    frames = traceback.extract_tb(error.__traceback__)
    theirs = [f for f in frames if not f.filename.startswith(str(Path(__file__).parent))]
    where = f" ({theirs[-1].filename}, line {theirs[-1].lineno})" if theirs else ""
    message = error.args[0] if type(error) is KeyError and error.args else error
    return ValueError(
        f"{what} raised {type(error).__name__}: {message}{where}; the error is in that code "
        "(or in the --task-opt options it was given), not in zo-llm"
    )


def _import_task(spec: str, options: dict[str, Any]) -> Task:
    """The task a ``module:object`` names (a Task, a Task class or a factory), with the generic
    split sizes it does not take itself applied around it (:class:`CutSplits`)."""
    from .tasks.base import SPLIT_SIZES, CutSplits

    target = _import_target(spec)
    taken = _options_taken(target)
    generic = {k for k in SPLIT_SIZES if k in options and k not in taken}
    sizes = {k: _whole(spec, k, options[k]) for k in generic if options[k] is not None}
    task = _make_task(spec, target, {k: v for k, v in options.items() if k not in generic})
    return CutSplits(task, **sizes) if sizes else task


def _whole(spec: str, name: str, value: Any) -> int:
    """``value`` as an int (flags and TOML give strings), or an error naming it."""
    try:
        return int(str(value))
    except ValueError:
        raise ValueError(f"task {spec!r}: {name}={value!r} must be a whole number") from None


def _options_taken(target: Any) -> set[str]:
    """The options ``target`` takes itself: a class's config fields, a factory's parameters
    (a Task object is made: it takes none)."""
    from .tasks.base import SPLIT_SIZES, Task

    if isinstance(target, Task):
        return set()
    if isinstance(target, type) and issubclass(target, Task):
        config = target.config_class
        return (
            {f.name for f in dataclasses.fields(config)}
            if dataclasses.is_dataclass(config)
            else set()
        )
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):  # not introspectable: it takes what it is given
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return set(SPLIT_SIZES)
    return {p.name for p in parameters}


def _import_target(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:  # `zo-llm` scripts lack the cwd
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"task {spec!r}: cannot import module {module_name!r}: {error}") from None
    except Exception as error:  # the user's module raised while it was imported
        raise user_code_error(f"task factory {spec}: importing {module_name}", error) from None
    if not hasattr(module, attribute):
        raise ValueError(
            f"task {spec!r}: cannot import {attribute!r} from {module_name!r} "
            f"({module.__file__}): it has no such name"
        )
    return getattr(module, attribute)


def _make_task(spec: str, target: Any, options: dict[str, Any]) -> Task:
    from .tasks.base import Task

    if isinstance(target, Task):
        # a resumed run passes back the object's own (recorded) options: those are fine
        own = dataclasses.asdict(target.config) if dataclasses.is_dataclass(target.config) else {}
        changed = sorted(k for k, v in options.items() if own.get(k, object()) != v)
        if changed:
            raise ValueError(
                f"task {spec!r} is a Task object; its options cannot be set ({', '.join(changed)}) "
                "but eval_size and train_size: set the others where the object is made, or name "
                "its class or a factory function as --task to pass them"
            )
        return target
    is_class = isinstance(target, type) and issubclass(target, Task)
    config = make_config(target.config_class, options, f"task {spec!r}") if is_class else None
    try:
        if is_class:
            return target(config)
        task = target(**options) if callable(target) else None
    except Exception as error:  # the user's factory raised (or took other options)
        raise user_code_error(f"task factory {spec}", error) from None
    if not isinstance(task, Task):
        raise ValueError(
            f"task {spec!r} is not a Task, a Task subclass, or a factory returning a Task"
        )
    return task


def build_space(name: str, options: Any = None) -> Parametrization:
    """A parametrization by registry name, configured by ``options``."""
    if name.startswith(OBJECT_PREFIX):
        raise ValueError(_object_message("space", name))
    return registry("space").get(name)(resolve_options("space", name, options))


def build_strategy(
    name: str, space: Parametrization, options: Any = None, seed: int = 0
) -> Strategy:
    """A strategy by registry name over the bound ``space``, configured by ``options``."""
    if name.startswith(OBJECT_PREFIX):
        raise ValueError(_object_message("strategy", name))
    cls = registry("strategy").get(name)
    return cls(space, resolve_options("strategy", name, options), seed=seed)


def component_name(kind: str, component: Any) -> str:
    """The registry name of a component object, or ``python:module.Class`` for another one.

    An unregistered component cannot be rebuilt from ``run_config.json``; a
    resume must pass the object again.
    """
    source = getattr(component, "source", None)  # built from "module:object" or a data path
    if isinstance(source, str):
        return source
    cls = type(component)
    return registry(kind).name_of(cls) or object_name(component)


def object_name(component: Any) -> str:
    """``python:module.Class``: how a run records an object it cannot rebuild by name."""
    cls = type(component)
    return f"{OBJECT_PREFIX}{cls.__module__}.{cls.__qualname__}"


def _object_message(kind: str, name: str) -> str:
    return (
        f"this run used an unregistered {kind} object ({name[len(OBJECT_PREFIX) :]}); pass it "
        f"again (resume(run, {kind}=...)) or register its class by name"
    )
