"""medstyle's training package: scans in and out, networks, training loops, directions.

Qt-free by contract (see the import-linter contracts in pyproject.toml).
"""

__version__ = "0.1.0"
