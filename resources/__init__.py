"""Data files shipped with medstyle (installed as ``medstyle_gui.resources``).

Find them with :func:`medstyle_gui.resources_path`, never by a path relative to
the checkout.
"""
