"""Name -> factory registries (methods, backbones, datasets, ...) instead of if-chains."""

import importlib
import pkgutil

from .errors import ConfigError


def import_submodules(package):
    """Import every module of ``package`` (a dotted name), so that each registers itself."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")


class Registry:
    """A named mapping filled by the ``@registry.register("name")`` decorator.

    ``package`` (a dotted name) is imported module by module at the first lookup, for packages
    whose modules are not imported with the package itself (so that a new file in it registers
    itself without further edits, and light imports of the package stay light).
    """

    def __init__(self, kind, package=None):
        self.kind = kind
        self._items = {}
        self._package = package

    def _load(self):
        if self._package is not None:
            package, self._package = self._package, None
            import_submodules(package)

    def register(self, name):
        def wrap(obj):
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return wrap

    def get(self, name):
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}", fix=f"use one of: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name):
        self._load()
        return name in self._items

    def names(self):
        self._load()
        return sorted(self._items)
