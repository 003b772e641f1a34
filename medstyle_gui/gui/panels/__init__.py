"""Dock panels, one a file; each ``XPanel(state: AppState, parent=None)``."""
