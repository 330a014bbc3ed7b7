#!/bin/sh
# SPDX-License-Identifier: MIT
# Container entrypoint: `imgsim "$@"` (default `serve`). On the first start of
# `serve` with no collection in $IMGSIM_COLLECTION (no index.hnsw) and photos
# mounted at $IMGSIM_PHOTOS (one subfolder per category), it first runs
# `imgsim build -c $IMGSIM_COLLECTION $IMGSIM_PHOTOS $IMGSIM_BUILD_ARGS`
# with the model of $IMGSIM_MODEL; later starts serve what is there.
set -eu
coll=${IMGSIM_COLLECTION:-/data}
if [ "${1:-}" = serve ] && [ ! -f "$coll/index.hnsw" ]; then
  if [ -z "${IMGSIM_PHOTOS:-}" ]; then
    echo "imgsim-entrypoint: no collection in $coll: mount a built one there, or mount" \
         "photos and set IMGSIM_PHOTOS to build it on first start" >&2
    exit 1
  fi
  if [ ! -d "$IMGSIM_PHOTOS" ]; then
    echo "imgsim-entrypoint: IMGSIM_PHOTOS=$IMGSIM_PHOTOS is not a directory" >&2
    exit 1
  fi
  echo "imgsim-entrypoint: building the collection $coll from $IMGSIM_PHOTOS" >&2
  # shellcheck disable=SC2086 # IMGSIM_BUILD_ARGS is a list of options
  imgsim build -c "$coll" "$IMGSIM_PHOTOS" ${IMGSIM_BUILD_ARGS:-}
fi
exec imgsim "$@"
