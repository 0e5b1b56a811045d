#!/usr/bin/env bash
# After an install into ./.venv: make `voicecli` runnable by name, or say exactly how.
#   bash scripts/on-path.sh          say whether `voicecli` is on PATH, and how to put it there
#   bash scripts/on-path.sh --link   link ~/.local/bin/voicecli to this checkout's .venv/bin/voicecli
# VOICECLI_BIN overrides the program to put on PATH (tests).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${VOICECLI_BIN:-$PWD/.venv/bin/voicecli}
bin_dir="$HOME/.local/bin"
link=0
[ "${1:-}" = "--link" ] && link=1

on_path() { case ":$PATH:" in *":$1:"*) return 0 ;; *) return 1 ;; esac; }

if [ "$link" = 1 ]; then
  mkdir -p "$bin_dir"
  if [ -e "$bin_dir/voicecli" ] && [ "$(readlink "$bin_dir/voicecli" || true)" != "$target" ]; then
    echo "on-path.sh: $bin_dir/voicecli exists and is not this checkout's; left alone" >&2
    exit 1
  fi
  ln -sfn "$target" "$bin_dir/voicecli"
  echo "linked $bin_dir/voicecli -> $target" >&2
fi

found=$(command -v voicecli 2>/dev/null || true)
if [ -n "$found" ] && [ "$(readlink -f "$found")" = "$(readlink -f "$target")" ]; then
  echo "voicecli is on your PATH ($found)" >&2
  exit 0
fi
if [ "$link" = 1 ] && ! on_path "$bin_dir"; then
  echo "$bin_dir is not on your PATH; add it (then open a new terminal):" >&2
  echo "  echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.bashrc" >&2
  exit 0
fi
cat >&2 <<MSG
voicecli is installed in $(dirname "$target"); to run it as plain \`voicecli\`, either
  bash scripts/install.sh --link      (links $bin_dir/voicecli to it)
  export PATH="$(dirname "$target"):\$PATH"      (this shell only)
or install it as a tool of its own: pipx install .   or   uv tool install .
MSG
