#!/usr/bin/env bash
# Record 5 seconds of the BTC/USD and ETH/USD books, then re-check every checksum.
# KBOOK_URL: where to record (default: the embedded simulator); KBOOK_CAPTURE: the capture file.
set -euo pipefail
capture="${KBOOK_CAPTURE:-/tmp/kbook-demo.capture.gz}"
kbook record "${KBOOK_URL:-sim}" --channel book --symbols BTC/USD,ETH/USD --depth 25 --duration 5 -o "$capture"
kbook verify "$capture"
