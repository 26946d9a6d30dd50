"""Discounts: a percentage off, and bulk discounts per product."""

from ..catalog import Product

BULK_THRESHOLD = 10


def percent_off(cents: int, percent: int) -> int:
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    return cents - cents * percent // 100


def line_price(product: Product, quantity: int) -> int:
    total = product.price_cents * quantity
    return percent_off(total, 10) if quantity >= BULK_THRESHOLD else total
