"""B8: data preparation that scales — 1k / 10k / 100k / 1M alpaca rows, time and peak memory per size.

    python bench/data_scale.py [--sizes 1000,10000,100000,1000000] [--before 1000,10000]

Rows are ../shared/data/alpaca_tiny.json repeated with a per-row variation (a variant number in the
instruction and the answer, so no two rows are equal), written as JSON lines. Each size is prepared
in a fresh process, as a run prepares it: read, convert, validate, split 10% off, tokenise through
the cache (SmolLM2's tokenizer from ../shared/models, its own chatml-style template; GPT-2's with
chatml where the GGUF is absent). A second fresh process prepares the same data again: the cache
hit. Times are the preparation alone (after imports and the tokenizer load, which a run pays
anyway); peak RSS is the process's VmHWM, imports included. "before" runs the code as it was
before the batched path (``git archive`` of BEFORE_REV) on the small sizes, in the same job.

Goals (issue 20, B8; issue 17): time per row flat, >= 10x faster per row than before, peak RSS
within 1.5x of the 1k case, cache hit < 0.1 of the first preparation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH, REPO, merge_results

SHARED = REPO.parent / "shared"
ALPACA = SHARED / "data" / "alpaca_tiny.json"
GGUF = SHARED / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GPT2 = SHARED / "data" / "gpt2_tokenizer"
BEFORE_REV = "5a9547e"
"""The last commit before batched, streamed preparation."""
MAX_LENGTH = 512


def write_rows(path: Path, n: int) -> None:
    """``n`` alpaca rows: the 100 real ones, each repeat numbered so rows differ."""
    base = json.loads(ALPACA.read_text(encoding="utf-8"))
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            row = base[i % len(base)]
            k = i // len(base)
            suffix = f" (variant {k})" if k else ""
            handle.write(json.dumps({"instruction": row["instruction"] + suffix, "input": row["input"],
                                     "output": row["output"] + (f" [{k}]" if k else "")}) + "\n")


def tokenizer_folder(scratch: Path) -> tuple[Path, str]:
    """A saved tokenizer folder (loading one from the GGUF takes ~25 s, so it is done once here)."""
    from transformers import AutoTokenizer

    out = scratch / "tokenizer"
    if GGUF.exists():
        tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
        tok.save_pretrained(out)
        return out, "SmolLM2-135M-Instruct (from the GGUF), its chat template"
    from ftx.models.templates import apply_chat_template_choice

    tok = apply_chat_template_choice(AutoTokenizer.from_pretrained(GPT2), "chatml")
    tok.save_pretrained(out)
    return out, "GPT-2 with the chatml template"


def peak_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(data: Path, tokenizer_dir: Path) -> None:
    """One preparation in this (fresh) process; prints a JSON line of figures."""
    started_process = time.perf_counter()
    from transformers import AutoTokenizer

    from ftx.data.cache import tokenize_prepared
    from ftx.data.prepare import prepare_examples
    from ftx.plugins import make_plugin_manager
    from ftx.recipe.schema import DataSection

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    found = make_plugin_manager().registry.get("data format", "alpaca")
    fmt = found.spec.build(found.spec.options())
    section = DataSection(format="alpaca", train=str(data), eval=0.1, max_length=MAX_LENGTH)
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    prepared = prepare_examples(section, fmt, 42)
    converted = time.perf_counter() - started
    result = tokenize_prepared(prepared, tokenizer, section.model_dump(), "assistant")
    seconds = time.perf_counter() - started
    tokens = sum(len(t.input_ids) for t in result.train[:1000])  # a sample, so the figure does not touch all
    print(json.dumps({
        "seconds": round(seconds, 3), "convert_seconds": round(converted, 3), "hit": bool(result.hit),
        "train": len(result.train), "eval": len(result.eval), "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_before_mib": round(rss_before, 1), "process_seconds": round(time.perf_counter() - started_process, 2),
        "tokens_per_example_sample": round(tokens / max(1, min(1000, len(result.train))), 1),
    }), flush=True)


def run_child(data: Path, tokenizer_dir: Path, home: Path, python_path: str | None = None) -> dict[str, Any]:
    env = {**os.environ, "FTX_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    if python_path:
        env["PYTHONPATH"] = python_path + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(data), str(tokenizer_dir)],
                         env=env, capture_output=True, text=True, cwd=BENCH)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({data.name}): {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def before_tree(scratch: Path) -> str | None:
    """The ftx package as it was at BEFORE_REV, extracted for PYTHONPATH; None without git."""
    target = scratch / "before"
    target.mkdir()
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE_REV, "core/ftx"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return str(target / "core")


def load_average() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def measure(label: str, data: Path, tokenizer_dir: Path, scratch: Path, python_path: str | None = None) -> dict[str, Any]:
    home = scratch / f"home-{label}-{data.stem}"
    load = load_average()
    first = run_child(data, tokenizer_dir, home, python_path)
    hit = run_child(data, tokenizer_dir, home, python_path)
    shutil.rmtree(home, ignore_errors=True)
    if first["hit"] or not hit["hit"]:
        raise RuntimeError(f"{label} {data.name}: the first preparation should miss and the second hit the cache")
    return {"first": first, "hit": hit, "load_average_at_start": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--before", default="1000,10000", help="sizes also prepared by the code before (slow)")
    parser.add_argument("--child", nargs=2, metavar=("DATA", "TOKENIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    before_sizes = [int(s) for s in args.before.split(",") if s]
    scratch = Path(tempfile.mkdtemp(prefix="ftx-b8-"))
    rows: list[dict[str, Any]] = []
    try:
        tok_dir, tok_name = tokenizer_folder(scratch)
        old = before_tree(scratch) if before_sizes else None
        for n in sorted(set(sizes) | set(before_sizes)):
            data = scratch / f"alpaca_{n}.jsonl"
            write_rows(data, n)
            if n in before_sizes and old is not None:
                rows.append({"rows": n, "code": "before", **measure("before", data, tok_dir, scratch, old)})
                print(_line(rows[-1]), flush=True)
            if n in sizes:
                rows.append({"rows": n, "code": "now", **measure("now", data, tok_dir, scratch)})
                print(_line(rows[-1]), flush=True)
            data.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures = summarise(rows, tok_name)
    print_table(rows, figures)
    merge_results("B8_data_scale", figures)
    return 0


def _line(row: dict[str, Any]) -> str:
    first, hit = row["first"], row["hit"]
    return (f"{row['code']:>6} {row['rows']:>8} rows: first {first['seconds']:.2f} s "
            f"({1e6 * first['seconds'] / row['rows']:.0f} us/row), peak {first['peak_rss_mib']:.0f} MiB; "
            f"hit {hit['seconds']:.3f} s, peak {hit['peak_rss_mib']:.0f} MiB (load {row['load_average_at_start']:.1f})")


def summarise(rows: list[dict[str, Any]], tokenizer: str) -> dict[str, Any]:
    now = {r["rows"]: r for r in rows if r["code"] == "now"}
    before = {r["rows"]: r for r in rows if r["code"] == "before"}
    per_row = {n: r["first"]["seconds"] / n for n, r in now.items()}
    smallest = min(now) if now else None
    figures: dict[str, Any] = {"tokenizer": tokenizer, "max_length": MAX_LENGTH, "cpu_count": os.cpu_count(),
                               "rows": rows}
    if smallest is not None:
        base_rss = now[smallest]["first"]["peak_rss_mib"]
        figures["peak_rss_over_smallest"] = round(max(max(r["first"]["peak_rss_mib"], r["hit"]["peak_rss_mib"])
                                                      for r in now.values()) / base_rss, 3)
        figures["per_row_largest_over_10k"] = round(per_row[max(now)] / per_row[min(now, key=lambda n: abs(n - 10_000))], 3)
        figures["hit_over_first_worst"] = round(max(r["hit"]["seconds"] / r["first"]["seconds"] for r in now.values()), 4)
    speedups = {n: (before[n]["first"]["seconds"] / n) / per_row[n] for n in before if n in now}
    if speedups:
        figures["per_row_speedup_over_before"] = {str(n): round(v, 2) for n, v in speedups.items()}
        figures["per_row_speedup_worst"] = round(min(speedups.values()), 2)
    figures["goals"] = {"per_row_speedup_worst": ">= 10", "peak_rss_over_smallest": "<= 1.5",
                        "hit_over_first_worst": "< 0.1", "per_row_largest_over_10k": "~1 (flat)"}
    return figures


def print_table(rows: list[dict[str, Any]], figures: dict[str, Any]) -> None:
    print(f"\nB8 data preparation ({figures['tokenizer']}; max_length {MAX_LENGTH}; eval 0.1; {os.cpu_count()} CPUs)")
    print(f"{'code':>6} {'rows':>9} {'first s':>9} {'us/row':>8} {'peak MiB':>9} {'hit s':>8} {'hit/first':>9} "
          f"{'hit MiB':>8} {'load':>5}")
    for r in rows:
        f, h = r["first"], r["hit"]
        print(f"{r['code']:>6} {r['rows']:>9} {f['seconds']:>9.2f} {1e6 * f['seconds'] / r['rows']:>8.0f} "
              f"{f['peak_rss_mib']:>9.0f} {h['seconds']:>8.3f} {h['seconds'] / f['seconds']:>9.3f} "
              f"{h['peak_rss_mib']:>8.0f} {r['load_average_at_start']:>5.1f}")
    for key in ("per_row_speedup_over_before", "per_row_speedup_worst", "peak_rss_over_smallest",
                "hit_over_first_worst", "per_row_largest_over_10k"):
        if key in figures:
            print(f"{key}: {figures[key]}  (goal {figures['goals'].get(key, '-')})")


if __name__ == "__main__":
    sys.exit(main())
