#!/usr/bin/env bash
# Shared set-up for test.sh and demo.sh: Debian packages the tests need, the venv, the project.
# Sourced, not run. Idempotent and quick when nothing changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian packages needed by tests that start real services (broker, RTSP server) on loopback.
# MASKWATCH_DEBIAN_PACKAGES="a b" replaces the list (an empty string installs nothing).
DEFAULT_DEBIAN_PACKAGES=(
  mosquitto            # MQTT broker: tests/pipeline/test_mqtt.py starts one per test on a free port
  mosquitto-clients    # mosquitto_passwd (password-file tests), mosquitto_sub for debugging
  python3-gi gir1.2-gst-rtsp-server-1.0   # RTSP server for tests/pipeline/test_rtsp.py (run by /usr/bin/python3)
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good   # videotestsrc; qtdemux, rtph264pay
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly    # h264parse; x264enc
  libgl1 libglib2.0-0  # OpenCV's GUI build, which the ByteTrack baseline ([eval] extra) pulls in, loads them
  chromium chromium-driver fonts-dejavu-core   # headless browser tests of the web console (tests/web), Selenium
)
if [ -n "${MASKWATCH_DEBIAN_PACKAGES+set}" ]; then
  read -r -a DEBIAN_PACKAGES <<< "$MASKWATCH_DEBIAN_PACKAGES"
else
  DEBIAN_PACKAGES=("${DEFAULT_DEBIAN_PACKAGES[@]}")
fi
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# Re-install only when the project's dependencies changed.
stamp=".venv/.maskwatch-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)-${MASKWATCH_EXTRAS:-dev}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing maskwatch[${MASKWATCH_EXTRAS:-dev}] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[${MASKWATCH_EXTRAS:-dev}]"
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
