"""Value-added tax."""

VAT_PERCENT = 20


def with_tax(cents: int) -> int:
    return cents + cents * VAT_PERCENT // 100
