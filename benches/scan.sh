#!/usr/bin/env bash
# Throughput and memory benchmark for `trailwarden scan`.
#
# This is a benchmark script, not a test: it prints numbers and fails only
# when a command fails. Absolute seconds on a shared, noisy machine mean
# little, so the headline is the RATIO against `gzip -dc` of the very same
# files on one core, measured in the same run: "how close are we to the cost
# of merely decompressing the logs?" That ratio travels between machines far
# better than MB/s does.
#
# What it does, in order:
#   1. cargo build --release --locked      (can take ~10 min on a cold cache)
#   2. generate (or reuse) a synthetic CloudTrail corpus (benches/gen_corpus.py):
#      ~200k records of ~1.4 KB in ~60 .json.gz files, plus one ~1 GiB
#      (uncompressed) single file for the memory test
#   3. time, best of $BENCH_RUNS (default 3):
#        a. baseline: gzip -dc of every file, pinned to one core
#           (and beside it the floor: libdeflate inflating each file whole in one call,
#           examples/inflate_floor.rs, the inflate `scan` itself uses for such files)
#        b. trailwarden scan --format json --aws-ip-ranges benches/aws-ip-ranges.json,
#           pinned to one core (the corpus's instance sessions call from those ranges),
#           then the same with SigmaHQ's CloudTrail rules added (--rules
#           tests/fixtures/sigmahq/cloudtrail)
#        c. trailwarden scan --format json, all cores
#        d. trailwarden scan --format json of the single 1 GiB file, all cores,
#           under GNU time -v for peak RSS (the scanner must stream, so RSS
#           should stay far below the file size)
#   4. print a table and the exact command to reproduce it.
#
# Knobs (environment): BENCH_RUNS, BENCH_RECORDS, BENCH_PER_FILE, BENCH_SEED,
# BENCH_BIG_GIB, BENCH_DIR (corpus cache, default target/bench-corpus),
# BENCH_CPU (core used for the single-core runs, default 0),
# BENCH_BIN (binary to benchmark, default target/release/trailwarden),
# BENCH_SKIP_BUILD=1 (use the existing binary as is).
# Variables are BENCH_* rather than TRAILWARDEN_* on purpose: TRAILWARDEN_*
# is the daemon's configuration namespace and must not leak into the runs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

RUNS="${BENCH_RUNS:-3}"
RECORDS="${BENCH_RECORDS:-200000}"
PER_FILE="${BENCH_PER_FILE:-3500}"
SEED="${BENCH_SEED:-42}"
BIG_GIB="${BENCH_BIG_GIB:-1}"
BENCH_DIR="${BENCH_DIR:-$REPO/target/bench-corpus}"
CPU="${BENCH_CPU:-0}"
# Honour CARGO_TARGET_DIR so the binary we time is the one cargo just built.
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
BIN="${BENCH_BIN:-$TARGET_DIR/release/trailwarden}"
SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"

# The exact command line, echoed at the end so a reader can rerun it verbatim.
REPRO="cd $REPO && ${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }BENCH_RUNS=$RUNS BENCH_RECORDS=$RECORDS BENCH_PER_FILE=$PER_FILE BENCH_SEED=$SEED BENCH_BIG_GIB=$BIG_GIB BENCH_CPU=$CPU"
if [[ "$BENCH_DIR" != "$REPO/target/bench-corpus" ]]; then REPRO+=" BENCH_DIR=$BENCH_DIR"; fi
if [[ -n "${BENCH_BIN:-}" ]]; then REPRO+=" BENCH_BIN=$BIN"; fi
if [[ "$SKIP_BUILD" == 1 ]]; then REPRO+=" BENCH_SKIP_BUILD=1"; fi
REPRO+=" benches/scan.sh"

log() { printf '\n==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
for tool in python3 gzip taskset find xargs; do
    command -v "$tool" >/dev/null || { echo "scan.sh: missing required tool: $tool" >&2; exit 1; }
done
# GNU time is needed for "Maximum resident set size"; bash's `time` keyword
# and busybox time don't report it. Debian/Ubuntu ship it as package `time`.
if ! /usr/bin/time -v true >/dev/null 2>&1; then
    log "GNU time not found; installing package 'time'"
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
    else
        echo "scan.sh: need GNU time at /usr/bin/time (apt-get install time)" >&2
        exit 1
    fi
fi
if [[ "$CPU" -ge "$(nproc)" ]]; then
    echo "scan.sh: BENCH_CPU=$CPU but this machine has $(nproc) CPUs" >&2
    exit 1
fi

# --- 1. build -----------------------------------------------------------------
if [[ "$SKIP_BUILD" != 1 ]]; then
    log "cargo build --release --locked (a cold build can take ~10 minutes)"
    cargo build --release --locked
    cargo build --release --locked --example inflate_floor
fi
[[ -x "$BIN" ]] || { echo "scan.sh: binary not found or not executable: $BIN" >&2; exit 1; }
FLOOR="$TARGET_DIR/release/examples/inflate_floor"
[[ -x "$FLOOR" ]] || { echo "scan.sh: $FLOOR not built (cargo build --release --example inflate_floor)" >&2; exit 1; }

# --- 2. corpus (cached) -----------------------------------------------------------
# A stamp of the generator's source plus its arguments decides whether the
# cached corpus is still the one this run asks for; otherwise regenerate.
mkdir -p "$BENCH_DIR/logs"
gen_stamp() { { sha256sum "$REPO/benches/gen_corpus.py" | cut -d' ' -f1; echo "$*"; } | sha256sum | cut -d' ' -f1; }

CORPUS="$BENCH_DIR/corpus"
corpus_args=(--records "$RECORDS" --per-file "$PER_FILE" --seed "$SEED")
stamp="$(gen_stamp "${corpus_args[@]}")"
if [[ -f "$BENCH_DIR/corpus.stamp" && "$(cat "$BENCH_DIR/corpus.stamp")" == "$stamp" && -f "$BENCH_DIR/corpus.stats.json" ]]; then
    log "reusing corpus $CORPUS"
else
    log "generating corpus in $CORPUS"
    rm -rf "$CORPUS" "$BENCH_DIR/corpus.stamp"
    python3 "$REPO/benches/gen_corpus.py" --out "$CORPUS" "${corpus_args[@]}" --stats "$BENCH_DIR/corpus.stats.json"
    echo "$stamp" > "$BENCH_DIR/corpus.stamp"   # written last: a killed run leaves no stamp
fi

BIG="$BENCH_DIR/big"
big_args=(--single-file-gib "$BIG_GIB" --seed "$SEED")
stamp="$(gen_stamp "${big_args[@]}")"
if [[ -f "$BENCH_DIR/big.stamp" && "$(cat "$BENCH_DIR/big.stamp")" == "$stamp" && -f "$BENCH_DIR/big.stats.json" ]]; then
    log "reusing single big file in $BIG"
else
    log "generating single ~${BIG_GIB} GiB (uncompressed) file in $BIG (streams; takes a minute)"
    rm -rf "$BIG" "$BENCH_DIR/big.stamp"
    python3 "$REPO/benches/gen_corpus.py" --out "$BIG" "${big_args[@]}" --stats "$BENCH_DIR/big.stats.json"
    echo "$stamp" > "$BENCH_DIR/big.stamp"
fi

# --- 3 + 4. measure and report ---------------------------------------------------------
log "measuring (best of $RUNS per row)"
python3 - "$BIN" "$CORPUS" "$BIG" "$BENCH_DIR" "$RUNS" "$CPU" "$REPRO" "$REPO/benches/aws-ip-ranges.json" "$FLOOR" "$REPO/tests/fixtures/sigmahq/cloudtrail" <<'PY'
import json, os, platform, re, statistics, subprocess, sys, time

BIN, CORPUS, BIG, BENCH_DIR, RUNS, CPU, REPRO, RANGES, FLOOR, SIGMAHQ = sys.argv[1:11]
# The corpus's instance sessions call from EC2 addresses, as real ones do; the scan is given
# those ranges, as a deployment would be, so instance-credentials-outside-aws fires only on the
# planted uses from outside AWS.
SCAN = [BIN, "scan", "--format", "json", "--aws-ip-ranges", RANGES]
RUNS = int(RUNS)
LOGS = os.path.join(BENCH_DIR, "logs")
corpus = json.load(open(os.path.join(BENCH_DIR, "corpus.stats.json")))
big = json.load(open(os.path.join(BENCH_DIR, "big.stats.json")))


def run_timed(label, cmd):
    """Run cmd RUNS times; stdout -> /dev/null (alerts are not what we time
    here, and a terminal or pipe would add its own cost), stderr -> a log.
    Any non-zero exit aborts the whole benchmark."""
    times = []
    err_path = os.path.join(LOGS, re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_") + ".stderr")
    for _ in range(RUNS):
        with open(err_path, "wb") as err:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err)
            dt = time.perf_counter() - t0
        if p.returncode != 0:
            sys.stderr.write(f"\nscan.sh: '{label}' failed with exit code {p.returncode}: {' '.join(cmd)}\n")
            sys.stderr.write("--- last stderr lines ---\n")
            sys.stderr.write("".join(open(err_path, errors="replace").readlines()[-20:]))
            sys.exit(1)
        times.append(dt)
    return min(times), statistics.median(times), err_path


def warm(path):
    # Read every file once so all rows start from a warm page cache; the first
    # row would otherwise pay for disk I/O the others don't.
    for root, _, files in os.walk(path):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


warm(CORPUS)
warm(BIG)
pin = ["taskset", "-c", CPU]
rows = []

# (a) Baseline. find|xargs rather than one gzip per file: it is what "just
# decompress everything" costs with the least process overhead.
gz_cmd = pin + ["sh", "-c", 'find "$1" -name "*.json.gz" -print0 | xargs -0 gzip -dc > /dev/null', "sh", CORPUS]
best, med, _ = run_timed("gzip -dc 1 core", gz_cmd)
rows.append(("gzip -dc (1 core)", corpus, best, med, None))
gz_mbps = corpus["uncompressed_bytes"] / 1e6 / best

# (a2) The floor: libdeflate inflating each file whole, one call per file, nothing else.
best, med, _ = run_timed("libdeflate 1 core", pin + [FLOOR, CORPUS])
rows.append(("libdeflate inflate, the floor (1 core)", corpus, best, med, None))

# (b) trailwarden, one core: per-core efficiency, comparable with gzip.
best, med, err1 = run_timed("trailwarden 1 core", pin + SCAN + [CORPUS])
rows.append(("trailwarden scan (1 core)", corpus, best, med, None))

# (b2) The same with SigmaHQ's published CloudTrail rules added, as users add them: one of
# them matches most records, so this row is about building and printing alerts.
best, med, _ = run_timed("trailwarden sigmahq 1 core", pin + SCAN + ["--rules", SIGMAHQ, CORPUS])
rows.append(("trailwarden scan + SigmaHQ rules (1 core)", corpus, best, med, None))

# (c) trailwarden, all cores: what a user actually gets.
best, med, errn = run_timed("trailwarden all cores", SCAN + [CORPUS])
rows.append((f"trailwarden scan ({os.cpu_count()} cores)", corpus, best, med, None))

# (d) one 1 GiB file under GNU time -v: peak RSS proves the scanner streams
# instead of slurping the object. Max RSS over the runs, best time.
rss = []
times = []
err_path = os.path.join(LOGS, "trailwarden_big_file.stderr")
for _ in range(RUNS):
    with open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-v"] + SCAN + [BIG],
                           stdout=subprocess.DEVNULL, stderr=err)
        times.append(time.perf_counter() - t0)
    text = open(err_path, errors="replace").read()
    if p.returncode != 0:
        sys.stderr.write(f"\nscan.sh: big-file scan failed with exit code {p.returncode}\n{text[-3000:]}")
        sys.exit(1)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not m:
        sys.stderr.write("scan.sh: could not read 'Maximum resident set size' from GNU time\n")
        sys.exit(1)
    rss.append(int(m.group(1)))
rows.append((f"trailwarden scan 1 file ({os.cpu_count()} cores)", big, min(times), statistics.median(times), max(rss)))

# --- report ---
cpu_model = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    rev = "?"

print()
print(f"trailwarden scan benchmark  (git {rev or '?'}, {platform.machine()}, nproc={os.cpu_count()}, {cpu_model})")
print(f"corpus: {corpus['files']} files, {corpus['records']} records, mean record {corpus['mean_record_bytes']:.0f} B, "
      f"{corpus['uncompressed_bytes'] / 1e6:.1f} MB uncompressed / {corpus['compressed_bytes'] / 1e6:.1f} MB gzip -{corpus['gzip_level']}")
print(f"single file: {big['records']} records, {big['uncompressed_bytes'] / 1e6:.1f} MB uncompressed / "
      f"{big['compressed_bytes'] / 1e6:.1f} MB gzip")
print(f"times: best of {RUNS} (median in brackets); 'x gzip' = this row's MB/s / gzip -dc 1-core MB/s "
      f"(1.00 = as fast as only decompressing; >1 possible with several cores)")
print()
hdr = ["run", "records", "MB (uncompr.)", "seconds", "records/s", "MB/s", "x gzip", "peak RSS"]
table = []
for name, st, best, med, rss_kb in rows:
    mb = st["uncompressed_bytes"] / 1e6
    table.append([name, f"{st['records']}", f"{mb:.1f}", f"{best:.3f} [{med:.3f}]",
                  f"{st['records'] / best:,.0f}", f"{mb / best:.1f}", f"{(mb / best) / gz_mbps:.2f}",
                  f"{rss_kb / 1024:.1f} MiB" if rss_kb else "-"])
w = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(hdr)]
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in table:
    print("| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |")
print()
for label, path in (("1-core scan summary (stderr)", err1), ("all-core scan summary (stderr)", errn)):
    lines = open(path, errors="replace").read().strip().splitlines()
    if lines:
        print(f"{label}, last lines:")
        for line in lines[-3:]:
            print(f"  {line}")
print()
print("Reproduce:")
print(f"  {REPRO}")
PY
