"""Image views: one slice read like a PACS viewer, and the four-way comparison."""

from medstyle_gui.gui.views.comparison import ComparisonView
from medstyle_gui.gui.views.slice_view import SliceView

__all__ = ["ComparisonView", "SliceView"]
