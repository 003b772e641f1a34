"""Scans in and out: the Volume, readers, writers, normalisation, registration, datasets."""
