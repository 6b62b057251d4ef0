"""cfgstore backend on the AIClient-2-API file layout (the embedded default)."""
