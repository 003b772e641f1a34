"""The Logic: everything a user can do, callable without a window (no Qt here)."""
