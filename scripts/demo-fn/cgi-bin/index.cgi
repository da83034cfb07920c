#!/bin/sh
# Runs for "/" (busybox httpd falls back to /cgi-bin/index.cgi for a directory
# URL without index.html) and dispatches on the query and body:
#   /?cpu=MS        -> /cgi-bin/cpu?ms=MS
#   /?mb=MB&ms=MS   -> /cgi-bin/mem?mb=MB&ms=MS
#   /?sleep=MS      -> /cgi-bin/sleep?ms=MS
#   /?status=CODE   -> /cgi-bin/status?code=CODE
#   any other request with a body -> /cgi-bin/echo
#   anything else   -> "ok"
. /usr/lib/demo-fn/common.sh

cgi=/www/cgi-bin
if param cpu; then
	QUERY_STRING="ms=$PARAM"
	exec "$cgi/cpu"
fi
if param mb; then
	exec "$cgi/mem"
fi
if param sleep; then
	QUERY_STRING="ms=$PARAM"
	exec "$cgi/sleep"
fi
if param status; then
	QUERY_STRING="code=$PARAM"
	exec "$cgi/status"
fi
case ${CONTENT_LENGTH:-0} in
'' | 0 | *[!0-9]*) ;;
*) exec "$cgi/echo" ;;
esac
reply "200 OK" "ok"
