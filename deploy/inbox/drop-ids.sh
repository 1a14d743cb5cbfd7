#!/bin/sh
# drop-ids.sh - hand ids to kore-archiver through its inbox, and find out what became of them.
#
#   drop-ids.sh [-i INBOX] [-n NAME] [ID...]     queue session ids (arguments, or stdin lines)
#   drop-ids.sh [-i INBOX] -u [-n NAME] [ID...]  queue every session of these user ids
#   drop-ids.sh [-i INBOX] -r NAME               show what the archiver did with file NAME
#
# INBOX defaults to $KORE_ARCHIVER_INBOX, else /var/lib/kore-archiver/inbox. Prints the name
# of the file it dropped, for -r later.
#
# How a file gets into the inbox safely: the scanner skips names starting with "." and files
# younger than [daemon] inbox_settle_time, so the ids are written to a hidden temporary file in
# the inbox itself (same file system), flushed to disk, and only then renamed to their final
# name. rename(2) is atomic: the archiver sees the whole file or nothing. Never write a file
# in place under its final name, and never "mv" it in from another file system (that is a
# copy, not a rename).
#
# Formats the archiver reads (any file name not starting with "."):
#   one id per line, "#" starts a comment            (what this script writes)
#   CSV with a header naming a sessionId, session_id or userId column
#   JSON: an array of session ids, or {"sessionIds": [...]} / {"userIds": [...]}
#   NDJSON: one such JSON value per line
#
# What happens to a file: once its ids are in the job store it moves to a subdirectory of the
# inbox, its name prefixed with a time stamp (processed/20261122T101500Z-ids.txt):
#   processed/   read; its valid ids were queued. Invalid lines, with their line numbers, are
#                in a report next to it (*.report.txt).
#   rejected/    nothing in it could be read; *.reason.txt says why.
#   quarantine/  never read: a symlink, FIFO, device, directory or a file over
#                [daemon] inbox_max_file_size; *.reason.txt says which.
# Whether the sessions themselves were archived is in the job store: "archiver status"
# (systemd: archiverctl status; Compose: docker compose exec archiver archiver status).
#
# On a systemd host the inbox is inside the service's private state directory, so run this as
# root; the file is made world-readable so that the service's own user can read it.
set -eu

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "drop-ids.sh: $*" >&2
    exit 1
}

inbox=${KORE_ARCHIVER_INBOX:-/var/lib/kore-archiver/inbox}
name=
users=no
report=

while getopts i:n:ur: opt; do
    case $opt in
        i) inbox=$OPTARG ;;
        n) name=$OPTARG ;;
        u) users=yes ;;
        r) report=$OPTARG ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))

[ -d "$inbox" ] || die "no inbox directory at $inbox"

check_name() {
    case $1 in
        "" | .* | *[!A-Za-z0-9._-]*) die "file name must be letters, digits, '.', '_', '-', not starting with '.': $1" ;;
    esac
}

# Print what the archiver did with the inbox file named $1.
show_report() {
    check_name "$1"
    if [ -e "$inbox/$1" ]; then
        echo "$1: still waiting in $inbox (read at the first scan after the settle time)"
        return 0
    fi
    matches=$(
        for dir in processed rejected quarantine; do
            [ -d "$inbox/$dir" ] && find "$inbox/$dir" -name "*$1*" ! -type d
        done | sort
    )
    [ -n "$matches" ] || die "$1: not found in $inbox or its processed/, rejected/, quarantine/"
    printf '%s\n' "$matches" | while IFS= read -r file; do
        echo "${file#"$inbox"/}"
        case $file in
            *.report.txt | *.reason.txt) sed 's/^/    /' "$file" ;;
        esac
    done
}

# Print the ids, one per line, from the arguments or else from standard input.
ids() {
    if [ "$#" -gt 0 ]; then
        printf '%s\n' "$@"
    else
        [ -t 0 ] && echo "drop-ids.sh: reading ids from standard input, one per line" >&2
        cat
    fi
}

# Write the ids read on standard input as an inbox file: one per line, or for user ids a JSON
# object (a file of bare lines is read as session ids).
format_session_ids() {
    echo "# session ids queued by $(id -un 2>/dev/null || echo unknown) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    count=0
    while IFS= read -r id; do
        [ -n "$id" ] || continue
        printf '%s\n' "$id"
        count=$((count + 1))
    done
    [ "$count" -gt 0 ] || die "no ids given"
}

format_user_ids() {
    sep=
    printf '{"userIds": ['
    while IFS= read -r id; do
        [ -n "$id" ] || continue
        # Checked here only because the id goes inside a JSON string; the archiver validates
        # every id itself.
        case $id in
            *[!A-Za-z0-9._@+-]*) die "not a valid user id: $id" ;;
        esac
        printf '%s"%s"' "$sep" "$id"
        sep=', '
    done
    [ -n "$sep" ] || die "no ids given"
    printf ']}\n'
}

if [ -n "$report" ]; then
    show_report "$report"
    exit 0
fi

[ -n "$name" ] || name="ids-$(date -u +%Y%m%dT%H%M%SZ)-$$.txt"
check_name "$name"
[ -e "$inbox/$name" ] && die "$inbox/$name already exists"

tmp="$inbox/.$name.tmp"
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# The archiver runs as its own user and must be able to read the file.
umask 022
set -C  # create the temporary file exclusively
if [ "$users" = yes ]; then
    ids "$@" | format_user_ids >"$tmp"
else
    ids "$@" | format_session_ids >"$tmp"
fi
set +C

# GNU sync flushes just the named file or directory; POSIX sync flushes everything.
sync "$tmp" 2>/dev/null || sync
mv "$tmp" "$inbox/$name"
sync "$inbox" 2>/dev/null || sync
echo "$name"
