#!/usr/bin/env bash
# Boot-overhead benchmark: boots the same Linux kernel + initramfs (guests/linux) to
# power-off N times directly on QEMU and N times under hv, alternating direct/hv in
# one run, and prints both medians and the hv/direct ratio.
#
#   scripts/bench-boot.sh [--arch aarch64|x86_64|all] [--runs N] [--kernel-version 6.1|6.12]
#                         [--pvh] [--timeout SECONDS]
#
#   --arch     default all (aarch64 then x86_64)
#   --runs     boots per side (default 5)
#   --pvh      x86_64: use the unpacked ELF vmlinux (PVH entry) instead of the bzImage, both sides
#   --timeout  per-boot limit (default 600 s, hv under TCG can be slow)
#
# The guest runs `true` and powers off. A boot counts only when the guest reported
# `hv-guest: cmd exit=0`. The hv side runs
#   scripts/run.sh --arch A --guest linux --guest-cmd true --kernel K --initrd I
# If that fails, the script says hv cannot run a Linux guest yet and prints the
# direct figures only. Exit status: 0 unless a direct boot failed or hv failed after
# having succeeded earlier in the run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

arches=(aarch64 x86_64) runs=5 kver=6.1 pvh=0 timeout_s=600
while [ $# -gt 0 ]; do
    case "$1" in
    --arch)
        case "${2:?}" in all) arches=(aarch64 x86_64) ;; aarch64 | x86_64) arches=("$2") ;;
        *) echo "bench-boot: --arch must be aarch64, x86_64 or all" >&2; exit 2 ;; esac
        shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --kernel-version) kver=${2:?}; shift 2 ;;
    --pvh) pvh=1; shift ;;
    --timeout) timeout_s=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-boot: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-boot: --runs wants a positive number" >&2; exit 2; }

logdir=$repo/target/bench-boot
mkdir -p "$logdir"

now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
guest_ok() { sed 's/\r$//' "$1" | grep -qx 'hv-guest: cmd exit=0'; }

failed=0
for arch in "${arches[@]}"; do
    built=$(guests/linux/build.sh --arch "$arch" --kernel-version "$kver")
    kernel=$(sed -n 's/^kernel=//p' <<<"$built")
    initrd=$(sed -n 's/^initrd=//p' <<<"$built")
    if [ "$pvh" = 1 ] && [ "$arch" = x86_64 ]; then
        kernel=$(sed -n 's/^vmlinux=//p' <<<"$built")
        [ -n "$kernel" ] || { echo "bench-boot: no vmlinux for --pvh" >&2; exit 1; }
    fi
    packages=$(sed -n 's/^packages=//p' <<<"$built")
    echo "bench-boot: $arch, $(head -n1 "$packages"), kernel $(basename "$kernel"), $runs boots per side, alternating"

    direct_times=() hv_times=() hv_state=try hv_reason=
    for i in $(seq 1 "$runs"); do
        log=$logdir/$arch-direct-$i.log
        start=$(now)
        if guests/linux/run-direct.sh --arch "$arch" --kernel "$kernel" --initrd "$initrd" --cmd true \
            --timeout "$timeout_s" --log "$log" >/dev/null 2>&1 && guest_ok "$log"; then
            direct_times+=("$(seconds_since "$start")")
        else
            echo "  run $i: direct boot FAILED (log: $log)"
            failed=1
            continue
        fi
        line="  run $i: direct ${direct_times[-1]} s"

        if [ "$hv_state" != off ]; then
            log=$logdir/$arch-hv-$i.log
            start=$(now)
            set +e
            timeout -k 5 "$timeout_s" scripts/run.sh --arch "$arch" --guest linux --guest-cmd true \
                --kernel "$kernel" --initrd "$initrd" </dev/null >"$log" 2>&1
            status=$?
            set -e
            if [ "$status" = 0 ] && guest_ok "$log"; then
                hv_times+=("$(seconds_since "$start")")
                hv_state=ok
                line+="   hv ${hv_times[-1]} s"
            else
                if [ ! -e scripts/run.sh ]; then
                    hv_reason="scripts/run.sh does not exist"
                elif [ "$status" = 124 ]; then
                    hv_reason="scripts/run.sh timed out after $timeout_s s"
                elif [ "$status" = 0 ]; then
                    hv_reason="scripts/run.sh exited 0 but the guest never printed 'hv-guest: cmd exit=0'"
                else
                    hv_reason="scripts/run.sh exited with status $status: $(grep -v '^[[:space:]]*$' "$log" | tail -n1 | tr -d '\r' | cut -c1-160)"
                fi
                [ "$hv_state" = ok ] && failed=1
                hv_state=off
                line+="   hv FAILED ($hv_reason; log: $log)"
            fi
        fi
        echo "$line"
    done

    if [ "${#direct_times[@]}" -gt 0 ]; then
        direct_median=$(median "${direct_times[@]}")
        echo "$arch direct median: $direct_median s (${#direct_times[@]} boots)"
    else
        echo "$arch direct: no successful boot"
        continue
    fi
    if [ "$hv_state" = off ] && [ "${#hv_times[@]}" -gt 0 ]; then
        echo "$arch hv: FAILED after ${#hv_times[@]} successful boot(s) ($hv_reason) - no hv median or ratio"
    elif [ "$hv_state" = ok ]; then
        hv_median=$(median "${hv_times[@]}")
        echo "$arch hv median:     $hv_median s (${#hv_times[@]} boots)"
        echo "$arch ratio hv/direct: $(awk -v h="$hv_median" -v d="$direct_median" 'BEGIN { printf "%.2f", h / d }')"
    else
        echo "$arch hv: hv cannot run a Linux guest yet ($hv_reason) - direct figures only, no hv median or ratio"
    fi
done
exit "$failed"
