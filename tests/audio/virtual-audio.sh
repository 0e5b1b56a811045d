#!/usr/bin/env bash
# virtual-audio.sh - a private PulseAudio daemon with a virtual microphone and speaker, for the
# audio tests and benchmarks of `voicecli talk` on machines without a sound card (CI, containers).
#
#   inject:  paplay -d virtual_mic_feed x.wav  -> sink virtual_mic_feed -> source virtual_mic (default input)
#   capture: parec -d virtual_speaker.monitor  <- sink virtual_speaker (default output)
#
# PortAudio (Debian's has no PulseAudio host API) reaches the daemon through ALSA's `pulse` plugin
# (libasound2-plugins), so the program under test just opens its default devices.
#
# Usage:  tests/audio/virtual-audio.sh start|stop|env [DIR]
#   start  start the daemon (if not already running in DIR) and verify the devices; prints the env file
#   stop   kill the daemon started in DIR (by its pid file)
#   env    print the exports for programs under test (PULSE_SERVER, XDG_RUNTIME_DIR)
# DIR defaults to $VOICECLI_AUDIO_DIR, else /tmp/voicecli-audio-$UID. Each test session uses its own
# DIR, so concurrent test runs on one machine do not share (or stop) each other's daemon.
# Needs: pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 (scripts/install.sh --test).
set -euo pipefail

ACTION=${1:-start}
DIR=${2:-${VOICECLI_AUDIO_DIR:-/tmp/voicecli-audio-$(id -u)}}
RATE=${VOICECLI_AUDIO_RATE:-24000}
RUNTIME=$DIR/runtime
SOCKET=$RUNTIME/pulse/native
export XDG_RUNTIME_DIR=$RUNTIME PULSE_SERVER=unix:$SOCKET

log() { echo "[virtual-audio] $*" >&2; }
running() { pactl info >/dev/null 2>&1; }
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

print_env() {
  echo "export XDG_RUNTIME_DIR=$RUNTIME"
  echo "export PULSE_SERVER=unix:$SOCKET"
}

start() {
  command -v pulseaudio >/dev/null || { log "pulseaudio is not installed (scripts/install.sh --test)"; exit 3; }
  mkdir -p "$RUNTIME"; chmod 700 "$RUNTIME"
  if running && pactl list short sources | grep -q '\bvirtual_mic\b'; then
    log "already running in $DIR"
  else
    # -n skips default.pa: no hardware probing, no suspend-on-idle, no stream restore.
    # norewinds=1 is essential: without it the mic side arrives garbled and >1 s late.
    cat > "$DIR/virtual-audio.pa" <<PA
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=virtual_speaker rate=$RATE channels=1 norewinds=1 sink_properties=device.description=Virtual_Speaker
load-module module-null-sink sink_name=virtual_mic_feed rate=$RATE channels=1 norewinds=1 sink_properties=device.description=Virtual_Mic_Feed
load-module module-remap-source master=virtual_mic_feed.monitor source_name=virtual_mic source_properties=device.description=Virtual_Mic
set-default-sink virtual_speaker
set-default-source virtual_mic
PA
    # --exit-idle-time=-1: otherwise it quits ~20 s after the last client leaves;
    # --disallow-exit: a stray `pactl exit` cannot end it. Root in per-user mode only warns.
    pulseaudio -n -F "$DIR/virtual-audio.pa" --daemonize=yes --use-pid-file=yes \
      --exit-idle-time=-1 --disallow-exit --log-target="file:$DIR/pulse.log" \
      || { log "pulseaudio failed to start:"; cat "$DIR/pulse.log" >&2 || true; exit 1; }
    for _ in $(seq 100); do running && break; sleep 0.1; done
    running || { log "daemon not reachable at $SOCKET"; cat "$DIR/pulse.log" >&2 || true; exit 1; }
  fi
  pactl list short sinks   | grep -q '\bvirtual_speaker\b'  || { log "sink virtual_speaker missing"; exit 1; }
  pactl list short sinks   | grep -q '\bvirtual_mic_feed\b' || { log "sink virtual_mic_feed missing"; exit 1; }
  pactl list short sources | grep -q '\bvirtual_mic\b'      || { log "source virtual_mic missing"; exit 1; }
  print_env > "$DIR/env"
  log "PulseAudio pid $(cat "$RUNTIME/pulse/pid" 2>/dev/null) ready at $SOCKET"
  echo "$DIR/env"
}

stop() {
  local pidfile=$RUNTIME/pulse/pid pid
  [ -f "$pidfile" ] || { log "not running in $DIR"; return 0; }
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    log "stopped PulseAudio pid $pid"
  fi
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|env [DIR]" >&2; exit 2 ;;
esac
