#!/bin/bash
# SPDX-License-Identifier: MIT
# Container health check: GET /healthz on the address of $IMGSIM_LISTEN and
# exit 0 on a 200. Plain HTTP/1.0 over bash's /dev/tcp, so that the image
# needs no curl (one package and its libraries fewer to keep patched).
listen=${IMGSIM_LISTEN:-127.0.0.1:8080}
port=${listen##*:}
host=${listen%:*}
if [ -z "$host" ] || [ "$host" = "$listen" ] || [ "$host" = 0.0.0.0 ]; then
  host=127.0.0.1
fi
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
IFS= read -r -t 5 status <&3 || exit 1
case $status in
  "HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "healthz: $status" >&2
exit 1
