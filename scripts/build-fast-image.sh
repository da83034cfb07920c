#!/usr/bin/env bash
# Build invok/fast-fn:latest, the upstream of the proxy benchmarks, without any registry.
#
# scripts/fast-fn/ is a std-only HTTP/1.1 responder (`GET /` -> "ok", connections kept
# alive). It is built statically (`-C target-feature=+crt-static`, glibc, no NSS use) and
# imported as the only file of a `FROM scratch`-like image (`docker import`), listening on
# 8080. Idempotent: the image carries the hash of the binary in dev.invok.fast-hash.
# Prints the image id on stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${FAST_IMAGE:-invok/fast-fn:latest}"
label="dev.invok.fast-hash"
log() { echo "build-fast-image: $*" >&2; }

docker info >/dev/null 2>&1 || bash "$here/docker-up.sh"

# Serialise concurrent runs (test binaries, benchmarks) so they do not import twice.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/invok-build-fast-image.lock"
  flock 9
fi

target_dir="${CARGO_TARGET_DIR:-$here/../target}/fast-fn"
triple="$(rustc -vV | sed -n 's/^host: //p')"
log "building fast-fn (release, static, $triple)"
(cd "$here/fast-fn" && RUSTFLAGS="-C target-feature=+crt-static" \
  CARGO_TARGET_DIR="$target_dir" cargo build --release --quiet --target "$triple")
bin="$target_dir/$triple/release/fast-fn"
case "$(ldd "$bin" 2>&1 || true)" in
*"not a dynamic executable"* | *"statically linked"*) ;;
*) log "$bin is not statically linked" && exit 1 ;;
esac

hash="$(sha256sum <"$bin" | cut -d' ' -f1)"
current="$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true)"
if [ "$current" = "$hash" ]; then
  log "$image is up to date"
  docker image inspect --format '{{.Id}}' "$image"
  exit 0
fi
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
install -m 0755 "$bin" "$root/fast-fn"
tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$root" -cf - fast-fn |
  docker import --change 'EXPOSE 8080' --change "LABEL $label=$hash" \
    --change 'ENTRYPOINT ["/fast-fn"]' - "$image" >/dev/null
new_id="$(docker image inspect --format '{{.Id}}' "$image")"
# Drop the previous build unless a container still uses it (rmi refuses then).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
log "built $image"
echo "$new_id"
