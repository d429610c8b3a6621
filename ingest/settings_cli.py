"""Command-line flags made from a pydantic-settings class: one flag per setting, same name."""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

__all__ = [
    "SettingFlag",
    "add_settings_flags",
    "describe_validation_error",
    "settings_flags",
    "settings_from_args",
]

S = TypeVar("S", bound=BaseSettings)
_METAVARS = {int: "INT", float: "NUMBER", str: "TEXT", Path: "PATH"}
_COLLECTIONS = (list, tuple, set, frozenset)


@dataclass(frozen=True)
class SettingFlag:
    """The command-line flag of one setting.

    Attributes
    ----------
    name
        The field name; also the argparse ``dest``. A field of a nested settings class that
        has a top-level twin of the same name shares its flag (both read one variable).
    option
        ``--`` and the name in kebab case.
    env
        The environment variable the flag overrides (``DRIFTLAKE_<NAME>``).
    field
        The pydantic field (description, default, annotation).
    kind
        The annotation without ``| None``.
    optional
        The field takes None, written ``none`` on the command line.
    """

    name: str
    option: str
    env: str
    field: FieldInfo
    kind: Any
    optional: bool

    @property
    def is_list(self) -> bool:
        """True for a collection: values comma-separated, or the flag repeated."""
        return get_origin(self.kind) in _COLLECTIONS


def settings_flags(settings_cls: type[BaseSettings]) -> list[SettingFlag]:
    """Return the flag of every setting of ``settings_cls``, nested settings' fields included.

    Example
    -------
    >>> from ingest.maintain.settings import MaintenanceSettings
    >>> [f.option for f in settings_flags(MaintenanceSettings)][:2]
    ['--warehouse', '--compact-grace']
    """
    seen: dict[str, SettingFlag] = {}
    for flag in _walk(settings_cls):
        seen.setdefault(flag.name, flag)  # the top-level field comes first
    return list(seen.values())


def _walk(cls: type[BaseSettings]) -> Iterator[SettingFlag]:
    prefix = cls.model_config.get("env_prefix", "")
    for name, field in cls.model_fields.items():
        nested = _nested_settings(field)
        if nested is not None:
            yield from _walk(nested)
            continue
        kind, optional = _unwrap_optional(field.annotation)
        option = "--" + name.replace("_", "-")
        yield SettingFlag(name, option, f"{prefix}{name}".upper(), field, kind, optional)


def add_settings_flags(
    parser: argparse.ArgumentParser,
    settings_cls: type[BaseSettings],
    *,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Add one ``--kebab-name`` flag per setting of ``settings_cls`` to ``parser``.

    The flag of field ``x_y`` is ``--x-y`` and mirrors ``<env_prefix>X_Y``; the fields of a
    nested settings class (``AnalyticsSettings.maintenance``) get flags of their own names,
    as their variables have. Each help line gives the field's description, default and
    variable. Values reach pydantic as text, so a bad one fails validation naming the field.
    ``bool`` becomes ``--x``/``--no-x``; ``Literal`` shows its choices; an optional field also
    takes ``none``; a list takes comma-separated values, the flag repeated, or both.
    Read the result with :func:`settings_from_args`.

    Parameters
    ----------
    parser
        The parser (or sub-command parser) to add the flags to.
    settings_cls
        The pydantic-settings class whose fields become flags.
    aliases
        Field name -> further option strings for it (older flag names kept working).

    Example
    -------
    >>> from ingest.maintain.settings import MaintenanceSettings
    >>> parser = argparse.ArgumentParser()
    >>> add_settings_flags(parser, MaintenanceSettings, aliases={"compact_grace": ["--grace"]})
    >>> args = parser.parse_args(["--grace", "60"])
    >>> settings_from_args(MaintenanceSettings, args).compact_grace
    60.0
    """
    aliases = aliases or {}
    for flag in settings_flags(settings_cls):
        options = [flag.option, *aliases.get(flag.name, ())]
        common: dict[str, Any] = {
            "dest": flag.name,
            "default": argparse.SUPPRESS,  # absent from the namespace unless given
            "help": _help(flag),
        }
        if flag.kind is bool:
            parser.add_argument(*options, action=argparse.BooleanOptionalAction, **common)
        else:
            action = "append" if flag.is_list else "store"
            parser.add_argument(*options, action=action, metavar=_metavar(flag), **common)


def settings_from_args(settings_cls: type[S], args: argparse.Namespace) -> S:
    """Build the settings from parsed flags: a flag given wins over its ``DRIFTLAKE_*``
    variable, which wins over the field's default.

    Raises
    ------
    pydantic.ValidationError
        A value is unusable; :func:`describe_validation_error` words it for a user.
    """
    given: dict[str, Any] = {}
    for flag in settings_flags(settings_cls):
        if not hasattr(args, flag.name):
            continue
        value = getattr(args, flag.name)
        if flag.is_list:
            value = [part.strip() for raw in value for part in raw.split(",") if part.strip()]
        elif flag.optional and isinstance(value, str) and value.strip().lower() == "none":
            value = None
        given[flag.name] = value
    return _build(settings_cls, given)


def _build(cls: type[S], given: Mapping[str, Any]) -> S:
    kwargs: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        nested = _nested_settings(field)
        if nested is not None:
            sub = {k: v for k, v in given.items() if k in nested.model_fields}
            if sub:  # else its default factory reads its variables itself
                kwargs[name] = _build(nested, sub)
        elif name in given:
            kwargs[name] = given[name]
    return cls(**kwargs)


def _nested_settings(field: FieldInfo) -> type[BaseSettings] | None:
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseSettings) else None


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    if get_origin(kind) in (Union, types.UnionType):
        rest = [a for a in get_args(kind) if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(get_args(kind)):
            return rest[0], True
    return kind, False


def _metavar(flag: SettingFlag) -> str:
    if get_origin(flag.kind) is Literal:
        text = "{" + ",".join(str(v) for v in get_args(flag.kind)) + "}"
    elif flag.is_list:
        item = _METAVARS.get((get_args(flag.kind) or (str,))[0], "X")
        text = f"{item}[,{item}...]"
    else:
        text = _METAVARS.get(flag.kind, "X")
    return f"{text}|none" if flag.optional else text


def _help(flag: SettingFlag) -> str:
    text = (flag.field.description or "").strip()
    default = _default_text(flag.field)
    # some descriptions already say their default in words
    if default is not None and "Default:" not in text:
        text += f" (default: {default}; env {flag.env})"
    else:
        text += f" (env {flag.env})"
    return text.strip().replace("%", "%%")  # argparse expands %-formats in help


def _default_text(field: FieldInfo) -> str | None:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory in _COLLECTIONS:
        value = field.default_factory()
    else:
        return None  # computed at start (a host name, say): the description says how
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(map(str, value)) or "empty"
    return str(value)


def describe_validation_error(exc: ValidationError) -> str:
    """Return ``field: problem; field: problem`` for a user (no URLs, no input dumps).

    Example
    -------
    >>> from ingest.maintain.settings import MaintenanceSettings
    >>> try:
    ...     MaintenanceSettings(compact_grace=-1)
    ... except ValidationError as exc:
    ...     print(describe_validation_error(exc))
    compact_grace: Input should be greater than or equal to 0
    """
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
