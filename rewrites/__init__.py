"""The built-in rule library: one module per family, each exporting RULES."""
