#!/bin/sh
# Makes the .env of the compose stack from .env.example, with a new random value (32 hex
# digits from /dev/urandom) for every setting whose example value starts with "change-me".
# Never overwrites an existing file. Usage: sh docker/make-env.sh [OUTPUT]  (default: ./.env)
set -eu

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/.env}"
if [ -e "$out" ]; then
  echo "make-env: $out already exists; remove it first to make a new one" >&2
  exit 1
fi

umask 077
tmp="$out.partial"
trap 'rm -f "$tmp"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    [A-Za-z_]*=change-me*)
      secret="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
      printf '%s=%s\n' "${line%%=*}" "$secret"
      ;;
    *) printf '%s\n' "$line" ;;
  esac
done < "$root/.env.example" > "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "make-env: wrote $out (mode 600) with new secrets; keep it out of version control"
