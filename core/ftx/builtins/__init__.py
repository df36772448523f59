"""Built-in plugins of the core; registered like any other plugin, from a tuple of module paths."""
