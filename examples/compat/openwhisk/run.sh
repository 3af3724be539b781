#!/bin/sh
# The seed's OpenWhisk sample as `wsk action create reverse reverse.js` sends it, then a blocking invoke.

set -eu
DATA="${POLYFN_DATA_DIR:-$HOME/.local/share/polyfn}"
URL="${POLYFN_URL:-$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$DATA/server.json")}"
AUTH="polyfn-admin:${POLYFN_API_KEY:-$(cat "$DATA/admin.key")}"
CODE=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$(dirname "$0")/reverse.js")
curl -sf -u "$AUTH" -X PUT "$URL/api/v1/namespaces/_/actions/reverse?overwrite=true" \
  -H 'content-type: application/json' -d "{\"exec\": {\"kind\": \"nodejs:default\", \"code\": $CODE}}"
echo
curl -sf -u "$AUTH" "$URL/api/v1/namespaces/_/actions/reverse?blocking=true&result=true" \
  -H 'content-type: application/json' -d '{"payload": "hello"}'
echo
