songs = ["a", "b"]
# PEP 701: the same quote nested inside a replacement field.
title = f"{", ".join(songs)} import not_real"
nested = f"{f"{f"{'import deep'}"}"}"
spec = f"{value!r:>{width}} {value=} {{import escaped}}"
multiline = f"""{
    value  # a comment inside a field
} import not_real_either"""
raw_field = rf"\{value} import nope"
name_escape = f"\N{BULLET} {value}"
format_with_colon = f"{value:%Y-%m-%d}"
dict_in_field = f"{ {'import': 1}['import'] }"
import after_fstrings
