import top

def function():
    import in_function
    from in_function_from import helper

    def inner():
        import in_inner

    return helper


class Klass:
    import in_class

    def method(self):
        from in_method import thing
        return thing


try:
    import ujson as json
except ImportError:
    import json
else:
    pass
finally:
    import in_finally

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pkg.types import Alias

if True: import one_line_if
else: import one_line_else

with open(__file__) as handle: import in_with

while False: import in_while

match top:
    case _:
        import in_match
