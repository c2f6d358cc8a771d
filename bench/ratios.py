"""Print the ratios docs/BENCHMARKS.md quotes, from a pytest-benchmark JSON file.

    pytest bench --benchmark-only --benchmark-json=bench.json && python bench/ratios.py bench.json
"""

import json
import re
import sys


def main(path):
    medians = {}
    for bench in json.load(open(path))["benchmarks"]:
        name, impl = re.fullmatch(r"test_(\w+)\[(\w+)\]", bench["name"]).groups()
        medians[name, impl] = bench["stats"]["median"]
    print(f"{'benchmark':<22} {'pure µs':>10} {'compiled µs':>12} {'speed-up':>9}")
    for name in sorted({n for n, _ in medians}):
        pure, fast = medians.get((name, "pure")), medians.get((name, "compiled"))
        if pure and fast:
            print(f"{name:<22} {pure * 1e6:>10.3f} {fast * 1e6:>12.3f} {pure / fast:>8.1f}x")
    for impl in ("pure", "compiled"):
        big, small = medians.get(("lookup_10k_uncached", impl)), medians.get(("lookup_10_uncached", impl))
        if big and small:
            print(f"{impl}: uncached lookup, 10,000 patterns / 10 patterns = {big / small:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1])
