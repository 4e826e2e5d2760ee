#!/bin/sh
# SPDX-License-Identifier: MIT
# usage: scripts/man-links.sh DIR
# For every other name a section 3 page of man/ lists in its NAME section,
# writes DIR/NAME.3 holding ".so man3/PAGE.3", so that `man xfer_op_wait`
# finds xfer_write(3). Run by `make install` after the pages are installed.
set -eu
dir=$(cd "$1" && pwd)   # absolute: the pages are read from the tree
cd "$(dirname "$0")/.."
for page in man/*.3; do
	base=$(basename "$page")
	# NAME's lines up to the " \- " that ends the names, commas split them.
	awk '/^\.SH/ { on = ($2 == "NAME"); next }
	     on { last = ($0 ~ / \\-/); sub(/ \\-.*/, ""); gsub(/,/, " "); print; if (last) exit }' "$page" |
	tr ' ' '\n' | grep -E '^xfer_[A-Za-z0-9_]+$' | while read -r name; do
		[ "$name.3" = "$base" ] && continue
		printf '.so man3/%s\n' "$base" > "$dir/$name.3"
	done
done
