"""Benchmark the needle generator: a 128K x 11-depth x 2-language suite, its time and size on disk."""

from __future__ import annotations

# Run: python tests/benchmarks/needle_suite.py [--lengths 128k] [--tokenizer embedded] [--out DIR]
# Prints wall and CPU time of `make_needle_suite` with the estimate and with the embedded model's
# tokenizer, the folder's size (haystack stored once per language) against the prompts it renders,
# and the largest miss of an item's counted length against its target.
import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="128k")
    parser.add_argument("--depths", default="0,10,...,100")
    parser.add_argument("--tokenizers", default="estimate,embedded")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from harness.suite import load_suite
    from harness.suite.needle import NeedleOptions, make_needle_suite, parse_depths, parse_lengths
    from harness.suite.prompt import PromptBuilder
    from harness.suite.token_counter import counter_for

    options = NeedleOptions(lengths=parse_lengths(args.lengths), depths=parse_depths(args.depths), langs=("en", "zh"))
    base = args.out or Path(tempfile.mkdtemp(prefix="needle-bench-"))
    for name in args.tokenizers.split(","):
        counter = counter_for(None if name == "estimate" else name)
        folder = base / f"suite-{name}"
        t0, c0 = time.perf_counter(), cpu()
        made = make_needle_suite(folder, options, counter)
        wall, used = time.perf_counter() - t0, cpu() - c0
        suite = load_suite(str(folder))
        builder = PromptBuilder(suite)
        t1 = time.perf_counter()
        rendered = sum(len(builder.build(item).messages[-1].text.encode()) for item in suite.items())
        render = time.perf_counter() - t1
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
        print(f"tokenizer {made.counted_by}")
        print(
            f"  {made.items} items ({', '.join(map(str, options.lengths))} tokens x {len(options.depths)} depths x 2 "
            f"languages): generated in {wall:.1f} s wall, {used:.1f} s CPU; largest miss {made.worst_miss:.3%}"
        )
        print(
            f"  on disk {made.bytes_on_disk / 1e6:.2f} MB "
            f"({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in files.items())}); the prompts it renders: "
            f"{rendered / 1e6:.1f} MB ({rendered / made.bytes_on_disk:.0f}x); rendering them all: {render:.1f} s"
        )


if __name__ == "__main__":
    main()
