#!/usr/bin/env bash
# Fuzz every parser of outside input (fuzz/README.md): build all cargo-fuzz
# targets once, then run each for SECONDS_PER_TARGET over its committed
# seed corpus, two targets at a time. New inputs go to a scratch corpus
# that is thrown away, so the committed one never grows. Fails, naming the
# target and the crashing input (kept under fuzz/artifacts/<target>/), if
# any target crashes, panics, times out or runs out of memory.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 10: the CI run)
#
# FUZZ_PROFILE=release builds optimised for a longer campaign (CI: dev,
# which builds cold in a few minutes); FUZZ_JOBS sets how many targets run
# at once (default 2); FUZZ_TARGETS="graph archive" runs only those;
# FUZZ_TOOLCHAIN=stable builds on stable even when nightly is there.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-10}"
jobs="${FUZZ_JOBS:-2}"
profile="${FUZZ_PROFILE:-dev}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    # A debug build of the tool installs in half the time; it only
    # drives cargo and libFuzzer, so its own speed does not matter.
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --debug
fi

# cargo-fuzz passes nightly-only (-Z) flags to cargo. Use a nightly
# toolchain when there is one; else (or with FUZZ_TOOLCHAIN=stable) let
# stable accept them.
toolchain=()
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

# No sanitizer: the code is safe Rust, and what we look for (panics,
# overflow, unbounded time or memory) needs none; builds and runs are
# several times faster without one. Overflow checks stay on in both.
build=(fuzz build --sanitizer none --debug-assertions)
case "$profile" in
    dev) build+=(--dev); out=debug ;;
    release) build+=(--release); out=release ;;
    *) echo "fuzz: FUZZ_PROFILE is dev or release, not $profile" >&2; exit 2 ;;
esac
echo "fuzz: building the targets ($profile)" >&2
cargo "${toolchain[@]}" "${build[@]}"
bin_dir="target/x86_64-unknown-linux-gnu/$out"

targets="${FUZZ_TARGETS:-$(cargo "${toolchain[@]}" fuzz list)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

dict_of() {
    case "$1" in
        sync_config | skopeo_config) echo dicts/yaml.dict ;;
        spool_state | upload_state) echo dicts/state.dict ;;
        *) echo "dicts/$1.dict" ;;
    esac
}

# Bundles and image graphs need room; a header is short.
max_len_of() {
    case "$1" in
        archive) echo 65536 ;;
        graph | oci_index | sync_config | skopeo_config | docker_config) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

# One target: its log in the scratch dir, its crash (if any) under
# artifacts/<target>/, exit status libFuzzer's.
run_target() {
    local t="$1" dict
    dict="$(dict_of "$t")"
    mkdir -p "$scratch/corpus/$t" "$scratch/tmp/$t" "artifacts/$t"
    local args=(
        -max_total_time="$seconds"
        -timeout=10
        -rss_limit_mb=2048
        -max_len="$(max_len_of "$t")"
        -print_final_stats=1
        -artifact_prefix="artifacts/$t/"
    )
    [ -f "$dict" ] && args+=(-dict="$dict")
    # The first directory receives what the run finds; the committed
    # corpus is only read. The targets' scratch files go with the rest.
    TMPDIR="$scratch/tmp/$t" "$bin_dir/$t" "${args[@]}" "$scratch/corpus/$t" "corpus/$t" >"$scratch/$t.log" 2>&1
}
export -f run_target dict_of max_len_of
export seconds scratch bin_dir

echo "fuzz: running $(echo "$targets" | wc -w) targets, ${seconds}s each, $jobs at a time" >&2
failed=()
# xargs runs `jobs` targets at once and reports which ones failed.
while read -r result target; do
    [ "$result" = ok ] || failed+=("$target")
done < <(echo "$targets" | tr ' ' '\n' | grep -v '^$' |
    xargs -P "$jobs" -I{} bash -c 'if run_target "$1"; then echo "ok $1"; else echo "fail $1"; fi' _ {})

printf '%-16s %12s %8s\n' target executions corpus >&2
for t in $targets; do
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || true)"
    units="$(find "$scratch/corpus/$t" "corpus/$t" -type f 2>/dev/null | wc -l)"
    printf '%-16s %12s %8s\n' "$t" "${runs:-?}" "$units" >&2
done

if [ "${#failed[@]}" -gt 0 ]; then
    for t in "${failed[@]}"; do
        echo "fuzz: target $t failed; the end of its log:" >&2
        tail -n 40 "$scratch/$t.log" >&2
        ls "artifacts/$t"/* 2>/dev/null | sed 's/^/fuzz: crashing input: fuzz\//' >&2 || true
    done
    echo "fuzz: reproduce with: cd fuzz && cargo fuzz run --sanitizer none --dev TARGET artifacts/TARGET/FILE" >&2
    exit 1
fi
echo "fuzz: no target failed" >&2
