"""Fixtures for the trainer's tests live in tests/conftest.py (shared with core/)."""
