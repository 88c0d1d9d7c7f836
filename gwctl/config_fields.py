"""Typed values of the gateway file, read at a path, every problem collected with that path.

:class:`FieldReader` turns YAML values into texts, numbers, choices, seconds, mappings and lists,
raising :class:`Invalid` (``routes[1].retries: expected a whole number, got text``); its
``_try`` records the problem and goes on, so one pass reports every problem in the file.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gwctl import parse


class Invalid(Exception):
    """One problem at one path (collected by :class:`FieldReader`)."""


def unknown_field(path: str, key: object, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"expected one of {', '.join(allowed)}"
    return f"{path}.{key}: unknown field; {hint}" if path else f"{key}: unknown field; {hint}"


def type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    return {dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


class FieldReader:
    """Reads typed values at a path, collecting every problem in ``problems`` (not stopping at
    the first): a reader method raises :class:`Invalid`, ``_try`` records it."""

    def __init__(self, base_dir: Path) -> None:
        self.problems: list[str] = []
        self.base_dir = base_dir

    def _try(self, fn: Callable[..., Any], *args: Any, default: Any = None, **kw: Any) -> Any:
        """``fn(*args, **kw)``, or ``default`` with the problem recorded."""
        try:
            return fn(*args, **kw)
        except Invalid as exc:
            self.problems.append(str(exc))
            return default

    # scalars ----------------------------------------------------------------------------------

    @staticmethod
    def text(value: object, path: str, *, required: bool = False) -> str:
        if value is None:
            if required:
                raise Invalid(f"{path}: required")
            return ""
        if not isinstance(value, str):
            raise Invalid(f"{path}: expected text, got {type_name(value)}")
        value = value.strip()
        if required and not value:
            raise Invalid(f"{path}: must not be empty")
        return value

    @staticmethod
    def integer(value: object, path: str, low: int = 0, high: int = 2**31 - 1) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{path}: expected a whole number, got {type_name(value)}")
        if not low <= value <= high:
            raise Invalid(f"{path}: {value} is out of range ({low}..{high})")
        return value

    @staticmethod
    def boolean(value: object, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise Invalid(f"{path}: expected true or false, got {type_name(value)}")
        return value

    @staticmethod
    def choice(value: object, path: str, choices: tuple[str, ...], default: str) -> str:
        text = FieldReader.text(value, path) or default
        if text not in choices:
            raise Invalid(f"{path}: {text!r} is not one of {', '.join(choices)}")
        return text

    @staticmethod
    def seconds(value: object, path: str, *, whole: bool) -> int:
        """Seconds (number or text with a unit) → ms, or whole seconds when ``whole``."""
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise Invalid(f"{path}: expected seconds, got {type_name(value)}")
        text = str(value)
        try:
            return parse.parse_whole_seconds(text) if whole else parse.parse_seconds_ms(text)
        except argparse.ArgumentTypeError as exc:
            raise Invalid(f"{path}: {exc}") from None

    def mapping(
        self, value: object, path: str, allowed: tuple[str, ...], *, what: str = "a mapping"
    ) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise Invalid(f"{path}: expected {what}, got {type_name(value)}")
        for key in value:
            if key not in allowed:
                self.problems.append(unknown_field(path, key, allowed))
        return {k: v for k, v in value.items() if k in allowed}

    @staticmethod
    def items(value: object, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise Invalid(f"{path}: expected a list, got {type_name(value)}")
        return value
