"""One AMI message: ordered ``Key: value`` headers, repeated keys kept.

AMI keys are matched case-insensitively (Asterisk itself spells ``Uniqueid`` and
``UniqueID`` in different events); values are kept exactly as received, including an empty
value. Lines that are not headers (a legacy ``Response: Follows`` body) are kept in
``lines`` rather than dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import overload


class AmiMessage:
    __slots__ = ("_first", "headers", "lines")

    def __init__(self, headers: Iterable[tuple[str, str]], lines: Iterable[str] = ()) -> None:
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        self.lines: tuple[str, ...] = tuple(lines)
        self._first: dict[str, str] | None = None  # built on first lookup

    def _index(self) -> dict[str, str]:
        """Lower-cased key → first value; most messages are dispatched by name only."""
        first = self._first
        if first is None:
            first = {}
            for key, value in self.headers:
                first.setdefault(key.lower(), value)
            self._first = first
        return first

    @classmethod
    def build(cls, **fields: str | list[str]) -> AmiMessage:
        """``AmiMessage.build(Action="Ping", ActionID="1")``; a list value repeats the key."""
        return cls(_pairs(fields))

    @property
    def kind(self) -> str:
        """``event``, ``response`` or ``action`` (the first header's key), lower case."""
        return self.headers[0][0].lower() if self.headers else ""

    @property
    def name(self) -> str:
        """The first header's value: the event name, response status or action name."""
        return self.headers[0][1] if self.headers else ""

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        return self._index().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._index()[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index()

    def getall(self, key: str) -> list[str]:
        wanted = key.lower()
        if wanted not in self._index():
            return []
        return [value for k, value in self.headers if k.lower() == wanted]

    def variables(self, key: str = "ChanVariable") -> dict[str, str]:
        """``ChanVariable: NAME=value`` headers (or ``Variable:``) as a dict."""
        out: dict[str, str] = {}
        for item in self.getall(key):
            name, sep, value = item.partition("=")
            if sep:
                out[name] = value
        return out

    def to_dict(self) -> dict[str, str | list[str]]:
        """Headers as a dict; a repeated key maps to the list of its values."""
        out: dict[str, str | list[str]] = {}
        for key, value in self.headers:
            if key in out:
                prior = out[key]
                if isinstance(prior, list):
                    prior.append(value)
                else:
                    out[key] = [prior, value]
            else:
                out[key] = value
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AmiMessage):
            return NotImplemented
        return self.headers == other.headers and self.lines == other.lines

    def __hash__(self) -> int:
        return hash((self.headers, self.lines))

    def __repr__(self) -> str:
        return f"AmiMessage({self.to_dict()!r})"


def _pairs(fields: Mapping[str, str | list[str]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in fields.items():
        if isinstance(value, list):
            pairs.extend((key, item) for item in value)
        else:
            pairs.append((key, value))
    return pairs
