"""medstyle: the application (Qt-free core, Qt GUI, command line)."""

from trainer import __version__

__all__ = ["__version__", "resources_path"]


def resources_path(*parts: str):
    """A file shipped in ``resources/`` (works from a checkout, an editable install,
    a wheel and a frozen build): ``resources_path("presets", "window_presets.json")``."""
    from importlib.resources import files

    return files("medstyle_gui.resources").joinpath(*parts)
