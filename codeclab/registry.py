"""The one registry mechanism: a name written in configs, model files and bitstreams finds a class.

Codecs, transforms, entropy models, entropy coders and index models each have one
:class:`Registry` (defined next to their base class)::

    ENTROPY_MODELS = Registry("entropy model")

    @ENTROPY_MODELS.register("charm")
    class ChannelwiseEntropyModel(LatentEntropyModel): ...

    ENTROPY_MODELS.build("charm", N=192, M=320)   # or ENTROPY_MODELS["charm"]

Unknown names raise :class:`KeyError` subclass :class:`UnknownName` with the list of known ones.

A registry whose names files record in one byte (the entropy coders) is given each name's
stable **wire id** up front (``Registry("entropy coder", wire_ids={"codeclab": 0, ...})``): the
one table the containers write and read, which holds before any entry's module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping


class UnknownName(KeyError, ValueError):
    """A name no entry was registered under (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry:
    """Names -> classes or builder functions of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str, wire_ids: Mapping[str, int] | None = None):
        self.kind = kind
        self._entries: dict[str, Callable] = {}
        self.wire_ids = dict(wire_ids or {})
        if len(set(self.wire_ids.values())) != len(self.wire_ids) or not all(0 <= i < 256 for i in self.wire_ids.values()):
            raise ValueError(f"{kind} wire ids must be distinct bytes")

    def register(self, name: str) -> Callable:
        """Decorator registering a class or function under ``name`` (also set as its ``registry_name``)."""

        def decorate(entry):
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if self.wire_ids and name not in self.wire_ids:
                raise ValueError(f"{self.kind} {name!r} has no wire id")
            self._entries[name] = entry
            if isinstance(entry, type):
                entry.registry_name = name
            return entry

        return decorate

    def __getitem__(self, name: str) -> Callable:
        if name not in self._entries:
            raise UnknownName(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def build(self, name: str, *args, **kwargs):
        """``self[name](*args, **kwargs)``."""
        return self[name](*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def wire_name(self, wire_id: int) -> str | None:
        """The name whose wire id is ``wire_id`` (None: no such id, a file written by something else)."""
        return next((name for name, i in self.wire_ids.items() if i == wire_id), None)
