#!/usr/bin/env bash
# Maven is needed once, by `make setup`, to fetch Spark's pinned jars; say so in one line.
if ! command -v "${MVN:-mvn}" >/dev/null 2>&1; then
  echo "Maven is required once to fetch Spark's jars (Iceberg, hadoop-aws, SQLite JDBC) and 'mvn' is not on PATH (install maven)." >&2
  exit 1
fi
