"""The weight dtypes that `slam identify`, `slam eval` and `slam merge` offer, in one place.

Kept free of torch so that building the command line (`slam --help`) imports nothing heavy; `auto` means the
checkpoint's own dtype (or, for `slam eval`, bfloat16 on a GPU that supports it; see `evaluation.loading`).
"""

DTYPES = ("auto", "float32", "bfloat16", "float16")
