#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine, then runs them.
#   bash scripts/test.sh            # whole suite
#   bash scripts/test.sh -k ring    # extra arguments go to pytest
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec .venv/bin/python -m pytest "$@"
