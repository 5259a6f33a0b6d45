# Helpers shared by the QEMU test scripts in scripts/tests.d (sourced from the
# repository root, after `cd`). Kept out of tests.d because scripts/test.sh
# runs every file there.
#
# A script counts its checks with `check`, and its last command is `summary`,
# which prints "N passed, M failed" and sets the script's exit status.

passed=0
failed=0
# Logs of the runs a check failed on (the value of $log when it failed), for
# show_failing_logs.
failing_logs=()

ok() {
    passed=$((passed + 1))
    printf '  ok    %s\n' "$*"
}

bad() {
    failed=$((failed + 1))
    printf '  FAIL  %s\n' "$*"
    [ -z "${log:-}" ] || [[ " ${failing_logs[*]} " == *" $log "* ]] || failing_logs+=("$log")
    # A script may say more about a failure by defining on_failed_check.
    if declare -F on_failed_check >/dev/null; then on_failed_check; fi
}

check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

# capture LOG COMMAND...: runs COMMAND with its output in LOG.raw and, without
# the serial console's carriage returns, in LOG; returns COMMAND's status.
capture() {
    local out=$1 status
    shift
    "$@" >"$out.raw" 2>&1
    status=$?
    tr -d '\r' <"$out.raw" >"$out"
    return "$status"
}

# run_logged NAME COMMAND...: runs COMMAND with no input, its log (see capture)
# in $logdir/NAME.log; sets $log to that file and $status to COMMAND's status.
run_logged() {
    local name=$1
    shift
    log="$logdir/$name.log"
    capture "$log" "$@" </dev/null
    status=$?
}

# setup_failed LOG: for a script whose build step failed: prints that step's
# log and the summary line, and ends the script.
setup_failed() {
    cat "$1"
    echo "0 passed, 1 failed"
    exit 1
}

# show_failing_logs: prints in full the logs of the runs a check failed on.
show_failing_logs() {
    [ "$failed" -ne 0 ] || return 0
    echo "logs of the runs with failures:"
    local f
    for f in "${failing_logs[@]}"; do
        echo "=== $f"
        cat "$f"
    done
}

# summary [TITLE]: prints "[TITLE: ]N passed, M failed"; fails if a check failed.
summary() {
    echo "${1:+$1: }$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
