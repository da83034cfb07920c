# Helpers shared by the demo function's CGI scripts (busybox ash).
#
# Installed in the image as /usr/lib/demo-fn/common.sh and sourced by every
# script in /www/cgi-bin. busybox httpd runs a CGI with the request in
# REQUEST_METHOD, QUERY_STRING and CONTENT_LENGTH, the body on stdin, and sends
# whatever the script prints; a first line "Status: NNN Reason" sets the status
# (busybox only honours it as the very first header line).

PATH=/bin
export PATH

# reply STATUS BODY [HEADER...]: print a complete plain-text CGI answer.
# STATUS is e.g. "200 OK"; BODY gets a trailing newline.
reply() {
	_status=$1
	_body=$2
	shift 2
	printf 'Status: %s\r\n' "$_status"
	printf 'Content-Type: text/plain\r\n'
	printf 'Content-Length: %s\r\n' "$(printf '%s\n' "$_body" | wc -c)"
	for _h in "$@"; do
		printf '%s\r\n' "$_h"
	done
	printf '\r\n%s\n' "$_body"
}

# bad_request MESSAGE: answer 400 with MESSAGE and end the script.
bad_request() {
	reply "400 Bad Request" "$1"
	exit 0
}

# param NAME: set PARAM to the (raw, not URL-decoded) value of the first
# NAME=... in QUERY_STRING; return 1 when NAME is absent.
param() {
	PARAM=
	_oldifs=$IFS
	IFS='&'
	set -f
	for _kv in $QUERY_STRING; do
		case $_kv in
		"$1"=*)
			PARAM=${_kv#*=}
			IFS=$_oldifs
			set +f
			return 0
			;;
		esac
	done
	IFS=$_oldifs
	set +f
	return 1
}

# int_param NAME MIN MAX: set INT to the decimal integer NAME from the query,
# or answer 400 (missing, not a plain decimal number, out of MIN..MAX).
int_param() {
	if ! param "$1"; then
		bad_request "missing query parameter $1 (want ?$1=N with N an integer in $2..$3)"
	fi
	INT=$PARAM
	case $INT in
	'' | *[!0-9]*)
		bad_request "invalid $1='$INT' (want an integer in $2..$3)"
		;;
	esac
	# Drop leading zeros: ash arithmetic reads 010 as octal and 09 as an error.
	while :; do
		case $INT in
		0?*) INT=${INT#0} ;;
		*) break ;;
		esac
	done
	# More than 9 digits could overflow the comparison below.
	if [ "${#INT}" -gt 9 ] || [ "$INT" -gt "$3" ] || [ "$INT" -lt "$2" ]; then
		bad_request "$1=$PARAM is out of range (want an integer in $2..$3)"
	fi
}
