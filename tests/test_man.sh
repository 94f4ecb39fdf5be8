#!/usr/bin/env bash
# test_man.sh - the manual pages: every public function of include/taskring.h
# has its section-3 page (a page of its own, or a .so line to a page that
# names it), taskring(1) documents every command of the tool and taskring(7)
# exists; every page is clean under mandoc's and groff's checkers; and
# `make install` puts them all under $(MANDIR).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

for tool in mandoc groff; do
	command -v $tool >/dev/null || { echo "FAIL: $tool is missing: run 'make deps'"; exit 1; }
done

funcs=$(grep -o '^TASKRING_API [^(]*(' include/taskring.h | sed 's/($//; s/.*[ *]//' | sort -u)
n=$(echo "$funcs" | wc -l)
[ "$n" -ge 60 ] || bad "only $n public functions found in include/taskring.h: the pattern is wrong"
for f in $funcs; do
	page=man/man3/$f.3
	if [ ! -f "$page" ]; then
		bad "$f has no manual page ($page)"
		continue
	fi
	if so=$(sed -n 's/^\.so  *//p' "$page") && [ -n "$so" ]; then
		[ -f "man/$so" ] || { bad "$page: .so $so: no such page"; continue; }
		page=man/$so
	fi
	# The page names the function in its NAME section and its synopsis.
	sed -n '/^\.SH NAME/,/^\.SH/p' "$page" | grep -qw "$f" || bad "$page: NAME does not name $f"
	sed -n '/^\.SH SYNOPSIS/,/^\.SH/p' "$page" | grep -qw "$f" || bad "$page: SYNOPSIS does not show $f"
done
for p in man/man3/*.3; do
	f=$(basename "$p" .3)
	echo "$funcs" | grep -qx "$f" || bad "$p documents no public function of include/taskring.h"
done

[ -f man/man1/taskring.1 ] || bad "man/man1/taskring.1 is missing"
[ -f man/man7/taskring.7 ] || bad "man/man7/taskring.7 is missing"
if [ -f man/man1/taskring.1 ] && [ -x "$BUILD/taskring" ]; then
	for cmd in $("$BUILD/taskring" --help | sed -n 's/^ *\(usage: \)\{0,1\}taskring \([a-z]*\).*/\2/p' | sort -u); do
		grep -q "taskring $cmd\|^\.B.* $cmd\b\|\\\\fB$cmd\\\\fP" man/man1/taskring.1 ||
			bad "taskring(1) does not document the command '$cmd'"
	done
fi

# Lint: mandoc at warning level and groff with all warnings; both silent.
for p in man/man*/*.[137]; do
	[ -n "$(sed -n '/^\.so /p' "$p")" ] && continue
	out=$(mandoc -Tlint -W warning "$p" 2>&1)
	[ -z "$out" ] || bad "mandoc -Tlint $p: $out"
	out=$(groff -man -Tutf8 -ww -z "$p" 2>&1)
	[ -z "$out" ] || bad "groff $p: $out"
done

# make install: every page lands under DESTDIR/PREFIX/share/man, and
# uninstall removes them again.
dest=$(mktemp -d "${TMPDIR:-/tmp}/taskring-man.XXXXXX")
trap 'rm -rf "$dest"' EXIT
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s install DESTDIR="$dest" PREFIX=/usr BUILD="$BUILD" \
	SANITIZE="${SANITIZE:-}" >/dev/null 2>"$dest.err" || bad "make install failed: $(cat "$dest.err")"
for p in man/man*/*.[137]; do
	[ -f "$dest/usr/share/man/${p#man/}" ] || bad "make install did not install $p"
done
[ -x "$dest/usr/bin/taskring" ] || bad "make install did not install the tool"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s uninstall DESTDIR="$dest" PREFIX=/usr BUILD="$BUILD" \
	SANITIZE="${SANITIZE:-}" >/dev/null 2>&1 || bad "make uninstall failed"
left=$(find "$dest" -type f | head -5)
[ -z "$left" ] || bad "make uninstall left: $left"
rm -f "$dest.err"

pages=$(ls man/man*/*.[137] | wc -l)
echo "# $n public functions, $pages manual pages checked"
exit $fail
