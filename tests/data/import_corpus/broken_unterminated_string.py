import before_error
from pkg import (alpha,
    beta)

TEXT = """this string never ends

import inside_the_broken_string
from also_inside import (
    gamma,
    delta,
)
importlib.import_module(".plugin", package="pkg")
