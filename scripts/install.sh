#!/usr/bin/env bash
# Install voicecli into ./.venv from this checkout.
#   bash scripts/install.sh          the tool itself (+ PortAudio, the only system library it needs)
#   bash scripts/install.sh --mcp    also the MCP SDK, for profiles with [[mcp]] servers
#   bash scripts/install.sh --link   also link ~/.local/bin/voicecli to it (so plain `voicecli` works)
#   bash scripts/install.sh --test   also what the test suite needs: PulseAudio null sinks, espeak-ng,
#                                    sox, and the Python test dependencies (pytest, openai, pexpect, mcp,
#                                    hypothesis)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_mcp=0
want_link=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --mcp) want_mcp=1 ;;
    --link) want_link=1 ;;
    *) echo "install.sh: unknown option $arg (use --test, --mcp and/or --link)" >&2; exit 2 ;;
  esac
done

apt_packages=(libportaudio2)
if [ "$want_test" = 1 ]; then
  apt_packages+=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox tmux)
fi

install_system_packages() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: no apt-get here; install these yourself if missing: ${apt_packages[*]}" >&2
    return 0
  fi
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "install.sh: need root to install: ${missing[*]}" >&2; return 1
    fi
  fi
  echo "install.sh: apt-get install ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_system_packages

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
extras=()
[ "$want_test" = 1 ] && extras+=(test mcp)
[ "$want_mcp" = 1 ] && [ "$want_test" = 0 ] && extras+=(mcp)
extra=""
[ ${#extras[@]} -gt 0 ] && extra="[$(IFS=,; echo "${extras[*]}")]"
.venv/bin/python -m pip install -q -e ".${extra}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/voicecli --version
if [ "$want_link" = 1 ]; then bash scripts/on-path.sh --link; else bash scripts/on-path.sh; fi
