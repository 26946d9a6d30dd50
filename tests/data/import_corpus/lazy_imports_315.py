lazy import json
lazy import a.b as ab
lazy from typing import TYPE_CHECKING
lazy from .relative import thing

lazy = "lazy is still an ordinary name"
print(lazy)
import eager
