#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The deployment files are well-formed and agree with each other:
#   - deploy/imgsim.service passes `systemd-analyze verify` with no message
#     at all (it exits 0 on unknown keys, so any output fails) and scores
#     <= 3.0 in `systemd-analyze security --offline`; skipped with a note
#     when systemd-analyze is absent;
#   - deploy/aws/Dockerrun.aws.json parses (node) and says v1, port 8080,
#     /data; .ebextensions point the health check at /healthz; the YAML
#     files parse (python3-yaml, when there);
#   - deploy/Dockerfile: bookworm-slim stages, non-root USER, VOLUME /data,
#     EXPOSE 8080, HEALTHCHECK, and every COPY source exists;
#   - deploy/entrypoint.sh builds on first start only (with a stub imgsim);
#   - deploy/healthcheck.sh says 0 for a live /healthz, 1 for a dead port
#     (against test_server_api --serve when the sample photos are there).
set -euo pipefail
src=${IMS_SOURCE_DIR:?}
bin=$(dirname "${IMS_CLI:?}")
food=${IMS_DATA_DIR:-$src/data}/food
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
d=$src/deploy

# ---- systemd unit --------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  # verify checks that the commands and the man page exist: point them here
  mkdir -p "$tmp/man/man1"
  cp "$src/docs/imgsim.1" "$tmp/man/man1/"
  sed -e "s|/usr/local/bin/imgsim|$IMS_CLI|" -e "s|/usr/local/share/imgsim/healthcheck|$d/healthcheck.sh|" \
    "$d/imgsim.service" >"$tmp/imgsim.service"
  out=$(MANPATH=$tmp/man systemd-analyze verify "$tmp/imgsim.service" 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  sec=$(systemd-analyze security --offline=yes "$tmp/imgsim.service" 2>&1 | grep 'Overall exposure') || true
  score=$(grep -Eo '[0-9]+\.[0-9]+' <<<"$sec" | head -1)
  [ -n "$score" ] || fail "systemd-analyze security: no score ($sec)"
  awk -v s="$score" 'BEGIN{exit !(s <= 3.0)}' || fail "systemd unit exposure $score > 3.0"
  echo "imgsim.service: verify clean, exposure $score"
else
  echo "note: no systemd-analyze: deploy/imgsim.service not verified"
fi
for k in 'ProtectSystem=strict' 'PrivateTmp=yes' 'NoNewPrivileges=yes' 'ProtectHome=yes' \
         'CapabilityBoundingSet=' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
         'Restart=on-failure' 'ReadWritePaths=' 'EnvironmentFile=' 'ExecStartPost='; do
  grep -q "^$k" "$d/imgsim.service" || fail "imgsim.service lacks $k"
done

# ---- Elastic Beanstalk ---------------------------------------------------------
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const ok = r.AWSEBDockerrunVersion === "1" && r.Image && typeof r.Image.Name === "string" &&
  (r.Ports || []).some(p => String(p.ContainerPort) === "8080") &&
  (r.Volumes || []).some(v => v.ContainerDirectory === "/data" && v.HostDirectory);
if (!ok) { console.error("Dockerrun.aws.json: want v1, an image, port 8080, a /data volume"); process.exit(1); }
' "$d/aws/Dockerrun.aws.json" || fail "deploy/aws/Dockerrun.aws.json"
grep -q 'HealthCheckPath: /healthz' "$d/aws/.ebextensions/healthcheck.config" || fail "no HealthCheckPath /healthz"
grep -q 'Application Healthcheck URL: /healthz' "$d/aws/.ebextensions/healthcheck.config" || fail "no Application Healthcheck URL"
host_dir=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).Volumes[0].HostDirectory)' \
  "$d/aws/Dockerrun.aws.json")
grep -q -- "$host_dir" "$d/aws/.ebextensions/data-dir.config" || fail "data-dir.config does not make $host_dir"

if python3 -c 'import yaml' 2>/dev/null; then
  python3 - "$d/docker-compose.yml" "$d"/aws/.ebextensions/*.config <<'PY' || fail "a YAML file does not parse"
import sys, yaml
for f in sys.argv[1:]:
    doc = yaml.safe_load(open(f))
    assert isinstance(doc, dict) and doc, f + ": not a mapping"
compose = yaml.safe_load(open(sys.argv[1]))
svc = compose["services"]["imgsim"]
assert "8080:8080" in svc["ports"] and any(v.endswith(":/data") for v in svc["volumes"]), "compose: port/volume"
PY
else
  echo "note: no python3-yaml: docker-compose.yml and .ebextensions not parsed"
fi

# ---- Dockerfile ----------------------------------------------------------------
df=$d/Dockerfile
[ "$(grep -c '^FROM debian:bookworm-slim' "$df")" = 2 ] || fail "Dockerfile: want two bookworm-slim stages"
for k in '^USER imgsim' '^VOLUME \["/data"\]' '^EXPOSE 8080' '^HEALTHCHECK ' '^ENTRYPOINT ' \
         'IMGSIM_LISTEN=0.0.0.0:8080' 'fetch-models --dest /opt/imgsim/models'; do
  grep -Eq "$k" "$df" || fail "Dockerfile lacks $k"
done
grep -E '^COPY ' "$df" | grep -v -- '--from=' | while read -r _ from _; do
  [ -e "$src/$from" ] || fail "Dockerfile: COPY $from: no such file"
done
for f in "$d/entrypoint.sh" "$d/healthcheck.sh" "$d/test-image"; do
  [ -x "$f" ] || fail "$f is not executable"
  bash -n "$f" || fail "$f: syntax"
done
sh -n "$d/entrypoint.sh" || fail "entrypoint.sh is not POSIX sh"

# ---- entrypoint: builds on first start only -----------------------------------
mkdir -p "$tmp/stub" "$tmp/photos/a"
printf '#!/bin/sh\necho "imgsim $*" >>"%s"\n[ "$1" = build ] && touch "$3/index.hnsw"\nexit 0\n' \
  "$tmp/calls" >"$tmp/stub/imgsim"
chmod +x "$tmp/stub/imgsim"
ep() { PATH=$tmp/stub:$PATH IMGSIM_COLLECTION=$tmp/coll "$@"; }
rc=0; ep env -u IMGSIM_PHOTOS "$d/entrypoint.sh" serve 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "entrypoint without collection or photos: exit $rc, want 1"
rc=0; ep env IMGSIM_PHOTOS=$tmp/nowhere "$d/entrypoint.sh" serve 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "entrypoint with a missing IMGSIM_PHOTOS: exit $rc, want 1"
mkdir -p "$tmp/coll"
ep env IMGSIM_PHOTOS=$tmp/photos IMGSIM_BUILD_ARGS="--no-finetune --seed 1" "$d/entrypoint.sh" serve --quiet 2>/dev/null
ep env IMGSIM_PHOTOS=$tmp/photos "$d/entrypoint.sh" serve 2>/dev/null
want="imgsim build -c $tmp/coll $tmp/photos --no-finetune --seed 1
imgsim serve --quiet
imgsim serve"
[ "$(cat "$tmp/calls")" = "$want" ] || fail "entrypoint ran: $(cat "$tmp/calls")"

# ---- healthcheck.sh against a live server ------------------------------------
if [ -x "$bin/test_server_api" ] && [ -d "$food" ]; then
  IMGSIM_LISTEN=127.0.0.1:0 "$bin/test_server_api" --serve "$food" >"$tmp/out" 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 600); do grep -q 'http://' "$tmp/out" && break; sleep 0.1; done
  port=$(grep -o 'http://[^ ]*' "$tmp/out" | head -1 | sed -E 's|^http://[^:/]+:([0-9]+).*|\1|')
  [ -n "$port" ] || { cat "$tmp/log"; fail "test server did not start"; }
  IMGSIM_LISTEN=0.0.0.0:$port "$d/healthcheck.sh" || fail "healthcheck.sh: live server on $port said unhealthy"
  kill -TERM "$pid"; wait "$pid" || true
  pid=
  rc=0; IMGSIM_LISTEN=127.0.0.1:$port "$d/healthcheck.sh" 2>/dev/null || rc=$?
  [ $rc != 0 ] || fail "healthcheck.sh: a closed port said healthy"
  echo "healthcheck.sh: 0 for a live /healthz, $rc for a closed port"
else
  echo "note: no test_server_api or sample photos: healthcheck.sh not run"
fi
echo "ok: deploy files"
