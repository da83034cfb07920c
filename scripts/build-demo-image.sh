#!/usr/bin/env bash
# Build the demo function image (invok/demo-fn:latest) without any registry.
#
# The image is a busybox-only root filesystem made from the host's static
# busybox and the CGI scripts in scripts/demo-fn/, loaded with `docker import`.
# It runs `httpd -f -p 8080 -h /www` and answers (plain text):
#   GET  /                      -> "ok"
#   POST /  (with a body)       -> same as /cgi-bin/echo
#   /?cpu=MS, /?mb=MB&ms=MS, /?sleep=MS, /?status=CODE -> the CGIs below
#   /cgi-bin/echo               -> the request body verbatim, headers
#                                  X-Hostname, X-Method, X-Query, X-Request-Uri
#                                  (raw), X-Got-Forwarded-For/-Proto/-Host
#   /cgi-bin/cpu?ms=N           -> burns one core for N ms
#   /cgi-bin/mem?mb=N&ms=M      -> holds about N MB of RSS for M ms
#   /cgi-bin/sleep?ms=N         -> answers after N ms, idle
#   /cgi-bin/status?code=N      -> answers with HTTP status N
#   /cgi-bin/bytes?n=N          -> answers N zero bytes (a large answer)
#
# With the command `nc -ll -p 8080 -e /usr/lib/demo-fn/raw-request` instead of
# httpd, it answers every request with its request line and headers exactly as
# they arrived (httpd normalises the path it shows a CGI).
#
# httpd runs as PID 1 and so ignores SIGTERM: `docker stop` waits its whole
# timeout (10 s) and then kills it, unless the container runs with --init
# (HostConfig.Init=true, Docker's tini), which stops it in ~0.1 s.
#
# Idempotent: the image carries a hash of everything it is made of (busybox,
# scripts/demo-fn/, this script) in the label dev.invok.demo-hash, and the
# script does nothing when the existing image has the same hash. Set
# DEMO_IMAGE_FORCE=1 to rebuild anyway, DEMO_IMAGE to build another name.
# Prints the image id on stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/demo-fn"
image="${DEMO_IMAGE:-invok/demo-fn:latest}"
label="dev.invok.demo-hash"

log() { echo "build-demo-image: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
  bash "$here/docker-up.sh"
fi

# Serialise concurrent runs (parallel tests) so they do not import twice.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/invok-build-demo-image.lock"
  flock 9
fi

find_busybox() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ]; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

is_static() {
  # ldd says "not a dynamic executable" (or "statically linked") for static
  # binaries; Debian's plain `busybox` package is dynamic and would not run
  # in an otherwise empty root filesystem.
  local out
  out="$(ldd "$1" 2>&1 || true)"
  case "$out" in
  *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
  *) return 1 ;;
  esac
}

busybox="$(find_busybox || true)"
if [ -z "$busybox" ] || ! is_static "$busybox"; then
  log "installing busybox-static from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq busybox-static >/dev/null
  busybox="$(find_busybox)"
fi
if ! is_static "$busybox"; then
  log "$busybox is not statically linked; install busybox-static"
  exit 1
fi

# Hash of the image content: busybox, every file under demo-fn/ (name and
# bytes), and this script (it defines the layout and the CMD).
content_hash() {
  {
    echo "busybox $(sha256sum <"$busybox" | cut -d' ' -f1)"
    echo "script $(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)"
    (
      cd "$src"
      find . -type f -print | LC_ALL=C sort | while IFS= read -r f; do
        echo "file $f $(sha256sum <"$f" | cut -d' ' -f1)"
      done
    )
  } | sha256sum | cut -d' ' -f1
}

hash="$(content_hash)"
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
current="$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image" 2>/dev/null || true)"
if [ "$current" = "$hash" ] && [ "${DEMO_IMAGE_FORCE:-0}" != 1 ]; then
  log "$image is up to date ($label=${hash:0:12})"
  docker image inspect --format '{{.Id}}' "$image"
  exit 0
fi

root="$(mktemp -d "${TMPDIR:-/tmp}/invok-demo-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT

log "building $image in $root"
mkdir -p "$root"/{bin,etc,proc,sys,dev,root,tmp,www/cgi-bin,usr/lib/demo-fn}
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

install -m 0755 "$busybox" "$root/bin/busybox"
# What `busybox --install -s /bin` would do inside the image: one symlink per
# applet (all in /bin, which is the image's whole PATH).
"$busybox" --list | while IFS= read -r applet; do
  case "$applet" in
  busybox | "" | */*) continue ;;
  esac
  ln -s busybox "$root/bin/$applet"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

install -m 0644 "$src/common.sh" "$root/usr/lib/demo-fn/common.sh"
install -m 0755 "$src/raw-request" "$root/usr/lib/demo-fn/raw-request"
for f in "$src"/cgi-bin/*; do
  install -m 0755 "$f" "$root/www/cgi-bin/$(basename "$f")"
done

tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 \
  -C "$root" -cf - . |
  docker import \
    --change 'ENV PATH=/bin' \
    --change 'WORKDIR /www' \
    --change 'EXPOSE 8080' \
    --change "LABEL $label=$hash" \
    --change 'CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]' \
    - "$image" >/dev/null

new_id="$(docker image inspect --format '{{.Id}}' "$image")"
# Drop the previous build unless a container still uses it (rmi refuses then).
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
log "built $image ($label=${hash:0:12})"
echo "$new_id"
