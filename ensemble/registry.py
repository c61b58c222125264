"""One registration mechanism for everything ens looks up by name: blenders, calibrators, model
families and metrics (timm's `_registry`): add, look up with an error that lists the valid names, list."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Sequence, TypeVar

from ensemble.errors import ConfigError

T = TypeVar("T")
C = TypeVar("C", bound=type)


class Registry(Generic[T]):
    """Named entries of one `kind` ("stacking method", "calibrator", …), in registration order."""

    def __init__(self, kind: str, also: Sequence[str] = ()) -> None:
        self.kind = kind
        self.also = tuple(also)  # names handled by the caller (e.g. "auto"), listed in errors
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register `item` under `name` (a name registered twice is a bug) and return it."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: register the class under `name` and set its `name` attribute."""
        def deco(cls: C) -> C:
            cls.name = name
            self.add(name, cls)  # type: ignore[arg-type]
            return cls

        return deco

    def get(self, name: str) -> T:
        """The entry registered under `name`; an unknown name lists the valid ones."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.choices())}") from None

    def choices(self) -> list[str]:
        return [*self._items, *self.also]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def items(self):
        return self._items.items()
