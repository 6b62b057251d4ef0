"""Where each file of the AIClient-2-API layout lives (aiclient-formats §0, §1)."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import resolve_path


@attrs.frozen
class Layout:
    """Absolute paths of every file. Paths named in ``config.json`` are resolved against
    the working directory, except that a path under ``configs/`` (the Node service's own
    defaults, e.g. ``configs/input_system_prompt.txt``) names a file of *this* configs
    folder, whatever its name: sibling deployments ``deploy-a/`` and ``deploy-b/`` never
    share a file through it. Unset ones default to files in the configs folder."""

    configs_dir: Path
    cwd: Path
    config: Path
    pools: Path
    custom_models: Path
    system_prompt: Path
    password: Path
    sessions: Path
    usage_cache: Path
    plugins: Path
    meta: Path
    kept: Path
    """The list of files kept as bytes (:mod:`cfgstore_file.kept_file_ops`)."""
    locks: Path
    traffic: Path
    """Per-minute traffic counts (:mod:`cfgstore_file.traffic_ops`)."""

    @classmethod
    def build(cls, configs_dir: Path, cwd: Path, config: MainConfig) -> Layout:
        configs_dir = configs_dir.absolute()
        cwd = cwd.absolute()

        node_configs = cwd / "configs"
        # In the legacy layout the configs folder *is* the working directory: Node's rule.
        rebase = configs_dir != node_configs and not node_configs.is_relative_to(configs_dir)

        def configured(key: str, default_name: str) -> Path:
            value = config.document.get(key)
            if not isinstance(value, str) or not value.strip():
                return configs_dir / default_name
            path = resolve_path(value, cwd)
            if rebase and path.is_relative_to(node_configs):  # Node's configs folder
                return configs_dir / path.relative_to(node_configs)
            return path

        return cls(
            configs_dir=configs_dir,
            cwd=cwd,
            config=configs_dir / "config.json",
            pools=configured("PROVIDER_POOLS_FILE_PATH", "provider_pools.json"),
            custom_models=configured("CUSTOM_MODELS_FILE_PATH", "custom_models.json"),
            system_prompt=configured("SYSTEM_PROMPT_FILE_PATH", "input_system_prompt.txt"),
            password=configs_dir / "pwd",
            sessions=configs_dir / "token-store.json",
            usage_cache=configs_dir / "usage-cache.json",
            plugins=configs_dir / "plugins.json",
            meta=configs_dir / ".cfgstore-meta.json",
            kept=configs_dir / ".cfgstore-kept.json",
            locks=configs_dir / ".cfgstore-locks",
            traffic=configs_dir / ".cfgstore-traffic.json",
        )


def configs_prefix(layout: Layout) -> str:
    """The configs folder as the Node service names it in node paths: relative to the
    working directory, ``./`` prefixed."""
    relative = os.path.relpath(layout.configs_dir, layout.cwd)
    return relative if relative.startswith("..") else "./" + relative
