#!/usr/bin/env bash
# Brings Signet up with its embedded defaults (SQLite, a SoftHSM development token)
# and shows a sign-and-verify round trip: a file is signed through the service over
# mutual TLS, and `openssl` verifies the signature against the key the service
# publishes. The service keeps running afterwards; the last lines say how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${SIGNET_DEV_DIR:-$PWD/.signet-dev}"
PORT="${SIGNET_PORT:-8443}"

bash scripts/install-system-deps.sh
bash scripts/ensure-node-deps.sh
signet() { node dist/cli/main.js "$@"; }

# Stop a service left running by an earlier quickstart in the same directory.
if [ -f "$DIR/serve.pid" ] && kill -0 "$(cat "$DIR/serve.pid")" 2>/dev/null; then
  kill "$(cat "$DIR/serve.pid")"; sleep 1
fi

echo "==> signet init --dir $DIR --port $PORT"
signet init --dir "$DIR" --port "$PORT" --force

echo "==> signet serve --config $DIR/signet.yaml (logs: $DIR/serve.log)"
nohup node dist/cli/main.js serve --config "$DIR/signet.yaml" >"$DIR/serve.log" 2>&1 &
echo $! >"$DIR/serve.pid"
for _ in $(seq 1 50); do
  if signet keys list --dir "$DIR" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$(cat "$DIR/serve.pid")" 2>/dev/null; then cat "$DIR/serve.log" >&2; exit 1; fi
  sleep 0.2
done
signet keys list --dir "$DIR"

echo "==> SIGNET_ID_TOKEN=\$(signet dev-token --dir $DIR) signet sign --dir $DIR --file $DIR/release.tar.gz"
head -c 1048576 /dev/urandom >"$DIR/release.tar.gz"
SIGNET_ID_TOKEN="$(signet dev-token --dir "$DIR")" signet sign --dir "$DIR" --file "$DIR/release.tar.gz" --out "$DIR/release.tar.gz.sig"

echo "==> openssl verifies the signature with the published public key"
node -e '
  const https = require("node:https"), fs = require("node:fs");
  const [dir] = process.argv.slice(1);
  const init = JSON.parse(fs.readFileSync(dir + "/signet-init.json", "utf8"));
  https.get(init.url + "/v1/keys/" + encodeURIComponent(init.keyId), { ca: fs.readFileSync(init.caCert) }, (res) => {
    let body = ""; res.on("data", (c) => (body += c));
    res.on("end", () => fs.writeFileSync(dir + "/release-key.pem", JSON.parse(body).publicKeyPem));
  }).on("error", (e) => { console.error(e.message); process.exit(1); });
' "$DIR"
openssl dgst -sha256 -verify "$DIR/release-key.pem" -signature "$DIR/release.tar.gz.sig" "$DIR/release.tar.gz"

echo
echo "Signet is running at https://127.0.0.1:$PORT (pid $(cat "$DIR/serve.pid")); stop it with: kill \$(cat $DIR/serve.pid)"
