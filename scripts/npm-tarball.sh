# Sourced by scripts/fetch-deps.sh and bench/peers/build.sh: fetch_tarball SPEC INTEGRITY prints
# the path of the tarball of npm package SPEC (name@version) under $cache/tarballs, downloading
# it with `npm pack` when missing, and exits when its sha512 differs from INTEGRITY (the value
# of `npm view NAME@VERSION dist.integrity`), deleting the file so the next run downloads again.
# The caller sets cache and creates $cache/tarballs.

fetch_tarball() {
  local spec=$1 integrity=$2
  local file="$cache/tarballs/$(echo "$spec" | tr '@/' '__').tgz"
  if [[ ! -f "$file" ]]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    mv "$tmp"/*.tgz "$file.part"
    rm -rf "$tmp"
    mv "$file.part" "$file"
  fi
  local actual="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "$(basename "$0"): $spec: integrity mismatch: got $actual, expected $integrity" >&2
    rm -f "$file"
    exit 1
  fi
  echo "$file"
}
