"""A model named by import path (``package.module:name``): imported, checked, and versioned."""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

from ingest import ConfigError

EXAMPLE = "mypkg.scoring:predict"


def import_model(path: str) -> tuple[Any, str]:
    """Import the object ``path`` names and return it with a version digest (hex sha256).

    ``path`` is ``package.module:name`` (``name`` may be dotted: ``module:Class.attr``), or
    ``package.module.name``. The object must be a fitted model with ``predict`` or a plain
    callable; the digest covers ``path`` and the module's source file, so a changed model
    gets a new version.

    Raises
    ------
    ConfigError
        If ``path`` is malformed, its module cannot be imported (or raises on import), the
        attribute does not exist, or the object is a class, or neither callable nor has
        ``predict``.
    """
    what = f"model {path!r} (DRIFTLAKE_MODEL, --model)"
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    parts = [*module_name.split("."), *attribute.split(".")]
    if not module_name or not attribute or not all(p.isidentifier() for p in parts):
        raise ConfigError(
            f"{what} is not an import path; expected 'package.module:name', e.g. {EXAMPLE}"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(
                f"{what}: no module named {exc.name!r}; is it installed, or in the server's "
                "working directory or on PYTHONPATH?"
            ) from exc
        raise ConfigError(f"{what}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the module's own code ran and raised: any exception at all
        raise ConfigError(
            f"{what}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(obj, part):
            owner = ".".join([module_name, *attribute.split(".")[:i]])
            raise ConfigError(f"{what}: {owner!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        raise ConfigError(
            f"{what} names the class {obj.__name__}; name a fitted instance of it, or a "
            "function taking the rows"
        )
    if hasattr(obj, "predict"):
        if not callable(obj.predict):
            kind = type(obj.predict).__name__
            raise ConfigError(f"{what}: its predict is a {kind}, not a method")
    elif not callable(obj):
        raise ConfigError(
            f"{what} is an object of type {type(obj).__name__}, neither callable nor with a "
            "predict method; "
            "name a function taking the rows or a fitted model"
        )
    return obj, _digest(path, module)


def _digest(path: str, module: Any) -> str:
    digest = hashlib.sha256(path.encode())
    source = getattr(module, "__file__", None)
    if source:
        try:
            with open(source, "rb") as fh:
                digest.update(b"\0" + fh.read())
        except OSError:
            pass  # a module without a readable file: versioned by its path only
    return digest.hexdigest()
