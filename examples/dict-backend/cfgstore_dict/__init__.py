"""An example cfgstore backend: the whole store in memory, saved to one JSON file."""
