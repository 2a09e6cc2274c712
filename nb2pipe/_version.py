"""The package version, in a module of its own so that any layer can read it without importing
the package's public API (nb2pipe/__init__.py imports the engine lazily)."""

__version__ = "0.1.0"
