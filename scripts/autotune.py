#!/usr/bin/env python3
"""The pinned cubecl autotune cache that tests/wgpu runs under on lavapipe (issue 17).

cubecl (0.10, under burn 0.21) picks each GPU kernel by timing the candidates at first use and
keeps the pick under target/autotune/<cubecl version>/<device>/<tuner>.json.log, one JSON line
per shape key. Two things make a live pick wrong for CI:

- cubek-matmul 0.2.0's double-buffered unit matmuls (matmul_double_unit_*, and the fusion
  tuner's fused_double_buffering_unit) read a second k-stage past the end of both operands when
  k is an odd multiple of the stage (k = 8, the batch, for a weight gradient): the bounds check
  is derived from one stage while the loop always runs two. The SE-reduce weight gradient of B0
  then came out as dW[o,i] + dW[o+1,i+1] in one cold run (the same defect upstream fixed for
  the Specialized kernels, tracel-ai/cubek#434). Whether a cold run hits it depends on timing.
- Tuning itself is most of the cold cost on lavapipe's one compile thread.

So CI seeds the caches with tests/fixtures/wgpu/autotune-pinned.tar.gz, in which no pick is a
double-buffered matmul, and fails if the tests tuned anything live (a shape the pinned cache
lacks: a model, batch or cubecl change; regenerate as below). There are two caches: cubecl
keeps its picks under the nearest Cargo.toml's target/ (target/autotune, the in-process tests)
or, run outside a cargo project, under the user's cache directory (the `maskflow run`
subprocesses of tests/wgpu, which point XDG_CACHE_HOME at target/cubecl-cache).

  scripts/autotune.py seed       # both caches := the pinned cache
  scripts/autotune.py check      # exit 1 if either differs from it (something was tuned live)
  scripts/autotune.py sanitize DIR     # rewrite double-buffered matmul picks in place
  scripts/autotune.py pin        # both caches merged and sanitized := the pinned cache

Regenerating: `rm -rf target/autotune target/cubecl-cache`, run tests/wgpu cold with
CUBECL_AUTOTUNE_LEVEL=minimal (the keys depend on the level), then `scripts/autotune.py pin`.
"""
import gzip
import hashlib
import io
import json
import pathlib
import shutil
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PINNED = ROOT / "tests/fixtures/wgpu/autotune-pinned.tar.gz"
CACHES = [ROOT / "target/autotune", ROOT / "target/cubecl-cache/cubecl/autotune"]
# Candidate names (substrings) that cubek-matmul 0.2.0 computes wrongly for some k.
UNSAFE = ("double_unit", "double_buffering_unit")


def unsafe(name):
    return any(u in name for u in UNSAFE)


def sanitize_line(line, where):
    """One cache entry with an unsafe pick replaced by the best-timed safe candidate that ran
    (results are listed best first), and a note of the change or None."""
    entry = json.loads(line)
    value = entry["value"]
    ran = [r["outcome"]["Ok"] for r in value["results"] if "Ok" in r["outcome"]]
    chosen = next((r for r in ran if r["index"] == value["fastest_index"]), None)
    if chosen is None or not unsafe(chosen["name"]):
        return entry, None
    safe = next((r for r in ran if not unsafe(r["name"])), None)
    if safe is None:
        sys.exit(f"{where}: no safe candidate ran for {json.dumps(entry['key'])}")
    value["fastest_index"] = safe["index"]
    return entry, f"{chosen['name']} -> {safe['name']}"


def sanitize(root):
    files = sorted(root.rglob("*.json.log"))
    if not files:
        sys.exit(f"{root}: no cubecl autotune cache files")
    for f in files:
        entries, changes = [], 0
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.strip():
                entry, note = sanitize_line(line, f"{f}:{n}")
                entries.append(json.dumps(entry, separators=(",", ":")))
                if note:
                    changes += 1
                    print(f"{f.name}:{n}: {note}")
        f.write_text("".join(e + "\n" for e in entries))
        if changes:
            print(f"{f.relative_to(root)}: {changes} picks rewritten")


def contents(root):
    """{relative path: sha256} of the cache files under root."""
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(root.rglob("*.json.log"))}


def pinned_contents():
    with tarfile.open(PINNED) as tar:
        return {
            m.name.removeprefix("./"): hashlib.sha256(tar.extractfile(m).read()).hexdigest()
            for m in tar.getmembers()
            if m.isfile()
        }


def merged(roots, into):
    """The cache files of `roots` concatenated per tuner into `into` (cubecl reads a file in
    order and a later line for a key overrides an earlier one)."""
    for root in roots:
        for f in sorted(root.rglob("*.json.log")) if root.exists() else []:
            target = into / f.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("ab") as out:
                out.write(f.read_bytes())


def main(argv):
    if len(argv) < 2 or argv[1] not in ("seed", "check", "sanitize", "pin") or (argv[1] == "sanitize") != (len(argv) == 3):
        sys.exit(__doc__)
    command = argv[1]
    if command == "sanitize":
        sanitize(pathlib.Path(argv[2]))
    elif command == "seed":
        for root in CACHES:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            with tarfile.open(PINNED) as tar:
                tar.extractall(root, filter="data")
            print(f"{root.relative_to(ROOT)}: seeded from {PINNED.relative_to(ROOT)} ({len(contents(root))} tuners)")
    elif command == "check":
        want, failed = pinned_contents(), False
        for root in CACHES:
            got = contents(root)
            changed = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
            if changed:
                failed = True
                print(f"error: {root.relative_to(ROOT)}: kernels were tuned live (the pinned cache lacks their shapes): {', '.join(changed)}", file=sys.stderr)
            else:
                print(f"{root.relative_to(ROOT)}: as pinned, nothing tuned live")
        if failed:
            print("  regenerate the pinned cache: see scripts/autotune.py's header", file=sys.stderr)
            return 1
    elif command == "pin":
        with tempfile.TemporaryDirectory() as scratch:
            root = pathlib.Path(scratch)
            merged(CACHES, root)
            sanitize(root)
            buffer = io.BytesIO()
            # Fixed metadata, so that the same picks give the same archive.
            with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
                for f in sorted(root.rglob("*.json.log")):
                    info = tar.gettarinfo(f, arcname=str(f.relative_to(root)))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    with f.open("rb") as data:
                        tar.addfile(info, data)
            PINNED.write_bytes(buffer.getvalue())
            print(f"{PINNED.relative_to(ROOT)}: {len(contents(root))} tuners, {len(buffer.getvalue())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
