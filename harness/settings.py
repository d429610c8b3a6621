"""The settings classes as a user meets them: every field, a nested class's fields in its place."""

from __future__ import annotations

from pydantic_settings import BaseSettings


def field_names(cls: type[BaseSettings]) -> set[str]:
    """Every field of ``cls``, a nested settings class's fields in its place (as env has).

    ``DRIFTLAKE_<NAME>`` and ``--<name-with-dashes>`` are what a user writes for each.
    """
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            names |= field_names(kind)
        else:
            names.add(name)
    return names
