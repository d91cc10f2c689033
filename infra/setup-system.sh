#!/usr/bin/env bash
# Installs the system packages Lintas needs from Debian (idempotent; root or sudo).
# Java and Maven assemble and run Kafka and the schema registry; kcat is the ops tool;
# Chromium draws the dashboards' preview.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn  >/dev/null 2>&1 || need+=(maven)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
# Headless Chromium for the dashboards' preview (lintas dashboards render --screenshot) and its test.
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
command -v python3.11 >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
