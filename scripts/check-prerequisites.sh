#!/usr/bin/env bash
# One clear line per missing prerequisite instead of a stack trace later.
status=0
if ! python="$(scripts/find-python.sh)"; then
  status=1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "Java 17 is required by Spark and 'java' is not on PATH (install openjdk-17-jre-headless)." >&2
  status=1
else
  version="$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  major="${version%%.*}"
  if [ "$major" = "1" ]; then major="$(echo "$version" | cut -d. -f2)"; fi
  if ! [ "$major" -ge 17 ] 2>/dev/null; then
    echo "Java 17 or newer is required by Spark; found Java ${version:-unknown} (install openjdk-17-jre-headless)." >&2
    status=1
  fi
fi
exit $status
