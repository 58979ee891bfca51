#!/usr/bin/env bash
# Record 5 seconds of the embedded simulator's BTC/USD book, then re-check every checksum.
set -euo pipefail
kbook record sim --channel book --symbols BTC/USD,ETH/USD --depth 25 --duration 5 -o /tmp/kbook-demo.capture.gz
kbook verify /tmp/kbook-demo.capture.gz
