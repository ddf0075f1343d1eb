#!/usr/bin/env bash
# The step of the GitHub Action (action.yml) and of the Azure Pipelines template
# (templates/reconcile.yml): installs `reconcile` once per version (the CI cache keeps it), then
# runs `reconcile COMMAND ARGS...`.
#
#   INPUT_COMMAND       the command (plan, apply, …); required
#   INPUT_ARGS          its arguments, split on spaces (no shell quoting)
#   INPUT_VERSION       a tag to install from the action's repository; empty: the action's own copy
#   RECONCILE_HOME      where the binary lives (default ~/.intune-reconcile; bin/reconcile under it)
set -euo pipefail
home="${RECONCILE_HOME:-$HOME/.intune-reconcile}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$home/bin/reconcile" ]; then
  echo "::group::Installing intune-reconcile (once per version and runner OS; cached afterwards)"
  if [ -n "${INPUT_VERSION:-}" ]; then
    repo="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_ACTION_REPOSITORY:?INPUT_VERSION needs the action repository}"
    cargo install --locked --git "$repo" --tag "$INPUT_VERSION" --root "$home" --bin reconcile
  else
    cargo install --locked --path "$here" --root "$home" --bin reconcile
  fi
  echo "::endgroup::"
fi
# Later steps of the job can call `reconcile` too.
if [ -n "${GITHUB_PATH:-}" ]; then echo "$home/bin" >> "$GITHUB_PATH"; fi
read -r -a extra <<< "${INPUT_ARGS:-}"
exec "$home/bin/reconcile" "${INPUT_COMMAND:?the action needs a command}" "${extra[@]}"
