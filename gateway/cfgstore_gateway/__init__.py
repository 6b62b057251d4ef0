"""The gateway: an OpenAI-compatible service in front of pools of upstream accounts, with
all its state in a cfgstore ``Store`` (files, or Redis with the memory fallback)."""
