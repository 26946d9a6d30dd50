"""A shopping cart that prices its lines with discounts and tax."""

from shop.catalog import load_products
from shop.pricing import discounts
from shop.pricing.tax import with_tax


class Cart:
    def __init__(self) -> None:
        self.products = load_products()
        self.lines: dict[str, int] = {}

    def add(self, sku: str, quantity: int = 1) -> None:
        if sku not in self.products:
            raise KeyError(f"unknown product {sku!r}")
        self.lines[sku] = self.lines.get(sku, 0) + quantity

    def total_cents(self) -> int:
        net = sum(discounts.line_price(self.products[sku], qty) for sku, qty in self.lines.items())
        return with_tax(net)
