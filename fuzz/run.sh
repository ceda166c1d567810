#!/usr/bin/env bash
# Builds and runs the cargo-fuzz targets of fuzz/ (docs/fuzzing.md).
#
#   fuzz/run.sh short                 every target for BPETOK_FUZZ_SHORT_SECONDS (default 20) each
#   fuzz/run.sh long SECONDS [TARGET...]   every target (or those named) for SECONDS each
#   fuzz/run.sh build                 only build
#
# Prints one line per target: seconds, executions, corpus size, and the finding (a crash, a
# failed assertion, a timeout, an allocation beyond the bound) with the file that reproduces it.
# Exits non-zero if any target found something. The corpus grows in fuzz/corpus/TARGET (not
# committed; the seeds in fuzz/seeds/TARGET are read too), findings go to fuzz/artifacts/TARGET.
#
# The machine's one stable toolchain builds the targets with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes
# -Z flags that are otherwise nightly-only); cargo-fuzz itself is installed from crates.io at the
# version below if `cargo fuzz` is missing.
set -euo pipefail
cd "$(dirname "$0")"
FUZZ_DIR=$(pwd)

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(encode_roundtrip encode_fast_path load_model load_mutated_model pack read_input verify_shards chat)
# Per-input limits: see docs/fuzzing.md "Bounds". The single-allocation bound is in src/lib.rs.
TIMEOUT_SECONDS=${BPETOK_FUZZ_TIMEOUT:-10}
RSS_LIMIT_MB=${BPETOK_FUZZ_RSS_MB:-2048}

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

usage() {
    sed -n '4,7p' "$0" >&2
    exit 2
}

ensure_cargo_fuzz() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io" >&2
        cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
    fi
}

build() {
    ensure_cargo_fuzz
    # No sanitizer: the core is safe Rust (unsafe_code = deny); the allocation bound is enforced by
    # the targets' own allocator. Debug assertions (and so overflow checks) on.
    cargo fuzz build --fuzz-dir "$FUZZ_DIR" --sanitizer none --debug-assertions
}

bin_dir() {
    local triple
    triple=$(rustc -vV | sed -n 's/^host: //p')
    echo "$FUZZ_DIR/target/$triple/release"
}

run_target() {
    local target=$1 seconds=$2 log
    mkdir -p "corpus/$target" "artifacts/$target"
    log=$(mktemp)
    local start=$SECONDS status=0
    "$(bin_dir)/$target" "corpus/$target" "seeds/$target" \
        -max_total_time="$seconds" -timeout="$TIMEOUT_SECONDS" -rss_limit_mb="$RSS_LIMIT_MB" \
        -artifact_prefix="artifacts/$target/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    local elapsed=$((SECONDS - start))
    local execs corpus finding
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [ "$status" = 0 ]; then
        finding="none"
    else
        finding=$(grep -E "^(==[0-9]+== ERROR|SUMMARY|thread '.*' panicked|bpetok-fuzz:)" "$log" | head -2 | tr '\n' ' ')
        finding="${finding:-exit $status} -> $(grep -o "artifacts/$target/[^ ]*" "$log" | tail -1)"
        cp "$log" "artifacts/$target/last-failure.log"
        tail -40 "$log" >&2
    fi
    printf '%-20s %6ss %12s execs %6s corpus   findings: %s\n' \
        "$target" "$elapsed" "${execs:-?}" "$corpus" "$finding"
    rm -f "$log"
    [ "$status" = 0 ]
}

run_all() {
    local seconds=$1
    shift
    local targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
    build
    local failed=0
    for t in "${targets[@]}"; do
        run_target "$t" "$seconds" || failed=1
    done
    if [ "$failed" != 0 ]; then
        echo "fuzzing found problems (reproduce: $(bin_dir)/TARGET artifacts/TARGET/FILE)" >&2
    fi
    return "$failed"
}

case "${1:-}" in
    short) run_all "${BPETOK_FUZZ_SHORT_SECONDS:-20}" ;;
    long)
        [ $# -ge 2 ] || usage
        seconds=$2
        shift 2
        run_all "$seconds" "$@"
        ;;
    build) build ;;
    *) usage ;;
esac
