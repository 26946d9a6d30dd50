INSTALLED_APPS = [
    "django.contrib.admin",
    'myproject.accounts',
    "myproject.billing.apps.BillingConfig",
]
ENTRY_POINT = "myproject.cli:main"
NESTED_ATTRIBUTE = "myproject.tasks:Worker.run"
SINGLE = "plugin"
FSTRING_PLAIN = f"myproject.fstring_plain"
FSTRING_FIELD = f"myproject.{name}"
BYTES = b"myproject.bytes"
TEMPLATE = t"myproject.template"
NOT_NAMES = ["a-b", "a..b", ".a", "a.", "a:b:c", "1abc", "", "with space", "utf-8"]
CONCATENATED = ("myproject" ".concatenated")
IN_FIELD = f"{load('myproject.in_field')}"
LONG = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
