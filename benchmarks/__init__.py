"""Speed and memory measurements; results go to benchmarks/RESULTS.md."""
