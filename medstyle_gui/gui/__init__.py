"""The Widgets: Qt panels that wire and display what medstyle_gui.core computes."""
