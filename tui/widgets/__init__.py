"""The TUI's widgets: the five views and the chrome around them."""
