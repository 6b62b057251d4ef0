"""Security (issue 13, 7): two configs folders side by side (``deploy-a/``, ``deploy-b/``,
one working directory) never share the system prompt.

Their ``config.json`` is what ``cfgctl serve`` writes for a fresh folder, with the Node
default ``SYSTEM_PROMPT_FILE_PATH: "configs/input_system_prompt.txt"``. Resolved against
the working directory as written, both would use ``<cwd>/configs/input_system_prompt.txt``;
it names each folder's own ``input_system_prompt.txt`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from cfgstore.adapters import Settings
from cfgstore_gateway.serve import ensure_default_configs
from tests.admin.conftest import admin_gateway


def sibling(root: Path, name: str) -> Settings:
    assert ensure_default_configs(root / name) is not None
    config = json.loads((root / name / "config.json").read_bytes())
    assert config["SYSTEM_PROMPT_FILE_PATH"] == "configs/input_system_prompt.txt"
    return Settings(configs_dir=root / name, state_dir=root / f"state-{name}")


async def test_sibling_configs_folders_keep_their_own_system_prompt(tmp_path: Path) -> None:
    a, b = sibling(tmp_path, "deploy-a"), sibling(tmp_path, "deploy-b")
    async with admin_gateway(a) as anonymous:
        admin = await anonymous.login()
        status, body = await admin.call("POST", "/api/config", json={"systemPrompt": "only A"})
        assert status == 200, body
        status, body = await admin.call("GET", "/api/config")
        assert status == 200 and body["systemPrompt"] == "only A", body
    async with admin_gateway(b) as anonymous:
        admin = await anonymous.login()
        status, body = await admin.call("GET", "/api/config")
        assert status == 200 and body["systemPrompt"] == "", body  # Node's: "" when none
        status, body = await admin.call("POST", "/api/config", json={"systemPrompt": "only B"})
        assert status == 200, body
    assert (tmp_path / "deploy-a" / "input_system_prompt.txt").read_text() == "only A"
    assert (tmp_path / "deploy-b" / "input_system_prompt.txt").read_text() == "only B"
    assert not (tmp_path / "configs").exists()
