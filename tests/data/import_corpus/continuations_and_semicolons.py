import a, \
    b, \
    c
from \
    pkg.mod \
    import \
    name
from x import (
    a,  # a comment inside the parentheses
    b as c,

    d,
)
import first; import second;import third
from m import n; from o import p
x = 1; import after_assignment
	
if x:
	import tab_indented
	from	spaced	import	tabs
import crlf_line
import after_crlf
