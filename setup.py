"""Package list for setuptools (everything else is in pyproject.toml).

``resources/`` lives at the top of the repository but installs as the package
``medstyle_gui.resources`` (see ``package-dir`` in pyproject.toml); automatic
discovery cannot see such a mapped folder, so it is named here.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["medstyle_gui*", "trainer*"]), "medstyle_gui.resources"])
