#!/usr/bin/env bash
# The test command: installs the real servers and peer tools the tests use
# (when missing), then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v umoci >/dev/null || need+=(umoci)
# A real proxy for the proxy tests, and a real runtime that pulls and loads
# what mirror wrote.
command -v tinyproxy >/dev/null || need+=(tinyproxy)
command -v podman >/dev/null || need+=(podman)
command -v zsh >/dev/null && command -v fish >/dev/null && command -v groff >/dev/null || need+=(zsh fish groff-base) # completions run in the real shells, man pages through groff
# The AzureML job-variable tests read each format back with the real parsers.
python3 -c 'import yaml, dotenv' 2>/dev/null || need+=(python3 python3-yaml python3-dotenv)
if ((${#need[@]})); then
  echo "installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The CronJob example is checked against Kubernetes' own schemas (offline).
command -v kubernetes-validate >/dev/null ||
  python3 -m pip install -q --disable-pip-version-check kubernetes-validate 2>/dev/null ||
  echo "kubernetes-validate could not be installed: the CronJob schema test will say SKIPPED"

cargo test --workspace --locked "$@"
