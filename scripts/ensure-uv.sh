# Sourced by the project's scripts: puts `uv` on PATH, installing it with pip when missing,
# then installs the workspace (all distributions, locked versions) with `uv sync --inexact`.
#
# --inexact: the sync adds and updates what the lock file names and removes nothing else, so
# plugins the user installed into this environment (third-party backends, cfgctl commands,
# gateway adapters: `uv pip install ...`) survive every run of scripts/cfgctl and scripts/test.
# A plain (exact) `uv sync` would uninstall them. To drop them, run `uv sync --all-packages
# --frozen` (exact) yourself.
if ! command -v uv >/dev/null 2>&1; then
    export PATH="$HOME/.local/bin:$PATH"
fi
if ! command -v uv >/dev/null 2>&1; then
    echo "uv not found; installing it with pip (--user)" >&2
    python3 -m pip install --user --quiet uv \
        || python3 -m pip install --user --quiet --break-system-packages uv
    # pip may put (or already have) it anywhere; ask the package where its binary is.
    uv_bin="$(python3 -c 'import uv; print(uv.find_uv_bin())')"
    PATH="$(dirname "$uv_bin"):$PATH"
    export PATH
    hash -r
fi
uv sync --all-packages --frozen --inexact --quiet
