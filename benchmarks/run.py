"""Runs benchmark suites and rewrites benchmarks/RESULTS.md.

    python -m benchmarks.run [--suite runtime] [--devices N]
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

SUITES = {
    "runtime": "benchmarks.runtime_suite",
    "scaling": "benchmarks.scaling_suite",
    "data": "benchmarks.data_suite",
    "sfe": "benchmarks.sfe_suite",
    "metrics": "benchmarks.metrics_suite",
    "realdata": "benchmarks.realdata_suite",
    "renderer": "benchmarks.renderer_suite",
    "rhm": "benchmarks.rhm_suite",
    "mdn": "benchmarks.mdn_suite",
    "quality": "benchmarks.quality_suite",
    "generate": "benchmarks.generate_suite",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", choices=sorted(SUITES), help="suites to run (default: all)")
    parser.add_argument("--devices", type=int, default=0, help="split the CPU into N devices (0: leave as is)")
    args = parser.parse_args(argv)
    import jax  # deferred: jax (seconds) only after the arguments parse, and set up before the suites use it

    if args.devices:
        jax.config.update("jax_num_cpu_devices", args.devices)
    from benchmarks.harness import save_suite  # imports the library: after the device count is set

    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    for suite in args.suite or sorted(SUITES):
        rows = importlib.import_module(SUITES[suite]).run()
        path = save_suite(suite, rows, command.strip())
        for row in rows:
            ratio = f"  ({row.ratio:.3f} x {row.baseline_name})" if row.ratio else ""
            print(f"{suite:10s} {row.name:55s} {row.value:12.4g} {row.unit}{ratio}")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
