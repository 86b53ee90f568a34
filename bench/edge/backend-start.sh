#!/bin/sh
# The backend service's start script (run by Berth with `sh -c` in the release folder, $PORT set):
# renders the nginx config from its template, then becomes nginx.
set -eu
RUN="$PWD/run-$PORT"
mkdir -p "$RUN"
sed -e "s|@PORT@|$PORT|g" -e "s|@RUN@|$RUN|g" -e "s|@HTML@|$PWD/html|g" \
    -e "s|@USER@|$(id -un)|g" -e "s|@GROUP@|$(id -gn)|g" \
    backend-nginx.conf.tmpl > "$RUN/nginx.conf"
exec nginx -p "$RUN/" -e "$RUN/error.log" -c "$RUN/nginx.conf" -g 'daemon off;'
