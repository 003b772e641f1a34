"""medstyle: the application (Qt-free core, Qt GUI, command line)."""

from trainer import __version__

__all__ = ["__version__"]
