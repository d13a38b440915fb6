#!/usr/bin/env bash
# Reliability figures for docs/reliability.md.
#
#   scripts/reliability.sh [kill|tests|all]      (default: all)
#
# kill:  the kill test. A small full pipeline (source → predict, training included) is run
#        once uninterrupted for reference; then TRIALS times (default 21, 3 per step kind), in
#        a fresh directory, a run is started and sent `kill -9` at a seeded random moment
#        inside the window of one step kind (taken round-robin over all kinds, the moment
#        uniform in the step's reference window). After each kill: `maskflow cache verify`
#        must pass, a plain rerun must complete, and submission.csv, metrics.json and the
#        trained weights' digest must equal the reference. A train step that had finished
#        an epoch before the kill must resume from its checkpoint. Prints a Markdown table.
# tests: runs the reliability integration tests (corruption, concurrency, faults, bad data)
#        and prints their outcome.
#
# Environment: MASKFLOW (the binary; default $CARGO_TARGET_DIR/release/maskflow, built if
# missing), TRIALS, SEED (default 1). Exit status: non-zero if any trial or test failed.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MASKFLOW=${MASKFLOW:-$TARGET/release/maskflow}
TRIALS=${TRIALS:-21}
SEED=${SEED:-1}
WHAT=${1:-all}
FAILED=0

if [ ! -x "$MASKFLOW" ]; then
    cargo build --release --bin maskflow >&2 || exit 1
fi

PIPE='data synthetic { persons = 40; eval_persons = 4; seed = 11; size = 48x64 }
split by person { val = 0.25; stratify = [gender] }
prepare { size = 24x32 }
model tiny_cnn { dropout = 0.0 }
train { epochs = 4; batch = 16; optimizer = adamw(lr = 3e-3); schedule = cosine(warmup = 0) }
predict { tta = hflip }
'
KINDS=(source relabel split prepare train evaluate predict)

# A seeded splitmix64, so the kill moments depend on SEED only.
RNG_STATE=$SEED
rand_unit() { # prints a float in [0, 1)
    RNG_STATE=$(python3 -c "
s=($RNG_STATE + 0x9E3779B97F4A7C15) & (2**64-1)
z=s; z=((z ^ (z>>30)) * 0xBF58476D1CE4E5B9) & (2**64-1); z=((z ^ (z>>27)) * 0x94D049BB133111EB) & (2**64-1); z ^= z>>31
print(s, z / 2**64)")
    echo "${RNG_STATE#* }"
    RNG_STATE=${RNG_STATE%% *}
}

# Final outputs of a finished run in directory $1: digests of submission.csv and
# metrics.json, and the trained weights' digest from the train record.
outputs_of() {
    local d=$1 key wd
    key=$(cd "$d" && "$MASKFLOW" explain p.mf train | jq -r .key)
    wd=$(jq -r '.outputs["model.safetensors"].digest' "$d/cache/records/${key:0:2}/${key:2}.json")
    echo "$(sha256sum < "$d/saved/p/latest/submission.csv" | cut -c1-12) $(sha256sum < "$d/saved/p/latest/metrics.json" | cut -c1-12) ${wd:0:12}"
}

kill_trials() {
    local work ref t0 t1
    work=$(mktemp -d)
    ref=$work/ref
    mkdir -p "$ref" && printf '%s' "$PIPE" > "$ref/p.mf"
    t0=$(date +%s.%N)
    (cd "$ref" && "$MASKFLOW" run p.mf --json > run.json) || { echo "reference run failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    local expected
    expected=$(outputs_of "$ref")
    # Step windows: cumulative step seconds, plus the process start-up before the first step
    # (the wall time not accounted to steps, put at the front).
    local windows
    windows=$(jq -r --argjson wall "$(echo "$t1 - $t0" | bc -l)" '
        ([.steps[].seconds] | add) as $sum | ($wall - $sum) as $lead
        | reduce .steps[] as $s ({t: $lead, out: []}; {t: (.t + $s.seconds), out: (.out + [[$s.kind, .t, .t + $s.seconds]])})
        | .out[] | "\(.[0]) \(.[1]) \(.[2])"' "$ref/run.json")
    echo "### Kill trials (seed $SEED, $TRIALS trials; reference run $(printf '%.1f' "$(echo "$t1 - $t0" | bc -l)") s)"
    echo
    echo "Reference outputs (submission.csv, metrics.json, weights): \`$expected\`"
    echo
    echo "| # | aimed at | killed at (s) | interrupted step | verify after kill | rerun | rerun train line | outputs equal |"
    echo "|---|---|---|---|---|---|---|---|"
    local i kind from to u at dir pid interrupted verify rerun trainline same got
    local ok_count=0
    for ((i = 0; i < TRIALS; i++)); do
        kind=${KINDS[$((i % ${#KINDS[@]}))]}
        read -r _ from to <<< "$(grep "^$kind " <<< "$windows")"
        u=$(rand_unit)
        at=$(echo "$from + ($to - $from) * $u" | bc -l)
        dir=$work/t$i
        mkdir -p "$dir" && printf '%s' "$PIPE" > "$dir/p.mf"
        (cd "$dir" && exec "$MASKFLOW" run p.mf > killed.out 2> killed.err) &
        pid=$!
        sleep "$at"
        kill -9 "$pid" 2> /dev/null
        wait "$pid" 2> /dev/null
        # The interrupted step: the first one the killed run did not report as finished.
        interrupted="(finished)"
        for k in "${KINDS[@]}"; do
            if ! grep -q "^run $k" "$dir/killed.out"; then interrupted=$k; break; fi
        done
        if (cd "$dir" && "$MASKFLOW" cache verify > verify.out 2>&1); then verify=ok; else verify="FAIL: $(head -1 "$dir/verify.out")"; fi
        if (cd "$dir" && "$MASKFLOW" run p.mf > rerun.out 2> rerun.err); then rerun=ok; else rerun="FAIL: $(head -1 "$dir/rerun.err")"; fi
        trainline=$(grep -o '^\(run\|hit\) train[^—]*— [^,]*\( (resumed after epoch [0-9]*)\)\?' "$dir/rerun.out" | sed 's/: .*—/ —/' | head -1)
        [ -z "$trainline" ] && trainline=$(grep -m1 ' train' "$dir/rerun.out" | cut -c1-40)
        same=no
        if [ "$rerun" = ok ]; then
            got=$(outputs_of "$dir")
            [ "$got" = "$expected" ] && same=yes || same="no ($got)"
        fi
        if [ "$verify" = ok ] && [ "$rerun" = ok ] && [ "$same" = yes ]; then ok_count=$((ok_count + 1)); else FAILED=1; fi
        printf '| %d | %s | %.2f | %s | %s | %s | %s | %s |\n' "$i" "$kind" "$at" "$interrupted" "$verify" "$rerun" "$trainline" "$same"
    done
    echo
    echo "$ok_count of $TRIALS trials: cache verified, rerun completed, outputs equal to the reference."
    echo
    rm -rf "$work"
}

test_table() {
    echo "### Integration tests"
    echo
    echo "| test file | result |"
    echo "|---|---|"
    local t out
    for t in reliability_corruption reliability_concurrency reliability_faults reliability_bad_data; do
        [ -f "tests/$t.rs" ] || continue
        if out=$(cargo test --release --test "$t" 2>&1); then
            printf '| %s | %s |\n' "$t" "$(grep -o 'test result: .*passed; [0-9]* failed' <<< "$out" | tail -1)"
        else
            FAILED=1
            printf '| %s | FAILED: %s |\n' "$t" "$(grep -o 'test result: .*' <<< "$out" | tail -1)"
        fi
    done
    echo
}

case $WHAT in
    kill) kill_trials ;;
    tests) test_table ;;
    all) test_table; kill_trials ;;
    *) echo "usage: $0 [kill|tests|all]" >&2; exit 2 ;;
esac
exit $FAILED
