#!/usr/bin/env bash
# Deploy the photo-notes demo to the polyfn node the CLI finds (POLYFN_URL / POLYFN_DATA_DIR, or the default).
set -euo pipefail
cd "$(dirname "$0")"
polyfn apps create photo-notes --no-password
polyfn db create-collection notes
polyfn apps rule photo-notes notes --preset creator        # each user reads and writes only their own notes
polyfn storage mb s3://app-photo-notes
polyfn deploy functions/thumbnail --name thumbnail --flavor aws --handler handler.handler
polyfn db grant thumbnail notes                             # it marks a note's thumbnail as ready
polyfn trigger add thumbnail storage --bucket app-photo-notes --prefix photos/
polyfn sites deploy site --name photo-notes
