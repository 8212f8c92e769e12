#!/bin/bash
# EMR bootstrap action: a Python 3.11 runtime with the two libraries spark_jobs need on the
# nodes, pinned to the versions the platform is locked to (uv.lock). Nothing of ours is
# installed here: the spark_jobs code travels with every step as a content-hashed bundle.
#
# EMR 6.15 ships Python 3.7; spark_jobs need >= 3.11 and dagster-pipes >= 3.9. Clusters run in a
# private subnet (S3 gateway endpoint, no internet), so everything comes from an S3 prefix:
#
#   <artifacts>/python/cpython-3.11.*-x86_64-unknown-linux-gnu-install_only.tar.gz
#       (python-build-standalone; relocatable, no compiler or yum repository needed)
#   <artifacts>/wheelhouse/*.whl
#       (pip download --only-binary=:all: --python-version 3.11 \
#            --platform manylinux2014_x86_64 dagster-pipes==1.13.27 boto3==1.44.8)
#
# Without a wheelhouse it falls back to PyPI, which needs a NAT gateway.
# Usage (bootstrap action): bootstrap.sh --artifacts s3://bucket/prefix/emr-artifacts
set -euo pipefail

DAGSTER_PIPES_VERSION="1.13.27"
BOTO3_VERSION="1.44.8"
# emr-config.json points PYSPARK_PYTHON here; the variable exists for the script's own test.
PREFIX="${CLINICAL_PYTHON_PREFIX:-/opt/clinical}"
PYTHON="${PREFIX}/python/bin/python3.11"

artifacts=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --artifacts) artifacts="${2%/}"; shift 2 ;;
    *) echo "bootstrap.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "${artifacts}" ]]; then
  echo "bootstrap.sh: --artifacts s3://... (Python runtime and wheels) is required" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

aws s3 cp --recursive --only-show-errors "${artifacts}/python/" "${work}/python/"
tarball="$(ls "${work}"/python/cpython-3.11.*-install_only.tar.gz 2>/dev/null | sort | tail -n 1 \
  || true)"
if [[ -z "${tarball}" ]]; then
  echo "bootstrap.sh: no cpython-3.11.*-install_only.tar.gz under ${artifacts}/python/" >&2
  exit 1
fi
sudo mkdir -p "${PREFIX}"
sudo tar -xzf "${tarball}" -C "${PREFIX}"   # unpacks to ${PREFIX}/python
"${PYTHON}" --version

pip_source=()
if aws s3 ls "${artifacts}/wheelhouse/" >/dev/null 2>&1; then
  aws s3 cp --recursive --only-show-errors "${artifacts}/wheelhouse/" "${work}/wheelhouse/"
  pip_source=(--no-index --find-links "${work}/wheelhouse")
fi
# ${a[@]+"${a[@]}"}: an empty array under set -u on the bash 4.2 of Amazon Linux 2.
sudo "${PYTHON}" -m pip install --no-cache-dir --disable-pip-version-check \
  ${pip_source[@]+"${pip_source[@]}"} \
  "dagster-pipes==${DAGSTER_PIPES_VERSION}" "boto3==${BOTO3_VERSION}"
"${PYTHON}" -c "from importlib.metadata import version as v; \
print('dagster-pipes', v('dagster-pipes'), 'boto3', v('boto3'))"
