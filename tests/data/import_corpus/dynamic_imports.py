import importlib
from importlib import import_module

plugin = importlib.import_module("plugins.alpha")
bare = import_module('plugins.beta')
keyword = importlib.import_module(name="plugins.gamma")
relative_literal_package = importlib.import_module(".delta", "plugins")
relative_keyword_package = importlib.import_module("..epsilon", package="plugins.sub")
relative_runtime_package = importlib.import_module(".zeta", __package__)
spread = importlib.import_module(
    "plugins.eta",
)
dunder = __import__("plugins.theta")
dunder_fromlist = __import__("plugins", globals(), locals(), ["iota", "kappa"], 0)
dunder_relative = __import__("lam", fromlist=["bda"], level=1)
in_fstring = f"{__import__('plugins.mu').__name__}"

# Not literal: nothing to report.
variable = importlib.import_module(plugin_name)
formatted = importlib.import_module(f"plugins.{plugin_name}")
concatenated = importlib.import_module("plugins." + plugin_name)
starred = importlib.import_module(*arguments)


def import_module(name):
    """A local function with the same name is not a call."""
    return name
