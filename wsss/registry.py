"""Name -> factory registries (methods, backbones, datasets, ...) instead of if-chains."""

from .errors import ConfigError


class Registry:
    """A named mapping filled by the ``@registry.register("name")`` decorator."""

    def __init__(self, kind):
        self.kind = kind
        self._items = {}

    def register(self, name):
        def wrap(obj):
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return wrap

    def get(self, name):
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}", fix=f"use one of: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name):
        return name in self._items

    def names(self):
        return sorted(self._items)
