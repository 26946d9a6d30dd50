from . import x
from . import (y as why, z)
from .sibling import name
from .. import parent_thing
from ..p.q import r
from ... import three_up
from .... import four_up
from ....deep.er import thing
from . import *
from .star import *
from __future__ import annotations
