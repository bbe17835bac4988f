"""Library-level pipelines: what a `slam` sub-command does, as functions the CLI, the benchmarks and users call.

`training` (`slam train`), `demo` (`slam demo`), `merge` (`slam merge`); the CLI modules only parse, call and print.
"""
