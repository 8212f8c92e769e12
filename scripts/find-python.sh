#!/usr/bin/env bash
# Print the first Python >= 3.11 on PATH, or explain in one line what is missing.
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    command -v "$candidate"
    exit 0
  fi
done
echo "Python 3.11 or newer is required and none was found on PATH (install python3.11)." >&2
exit 1
