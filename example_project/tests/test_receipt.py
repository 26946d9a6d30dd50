"""The receipt, compared with an expected text whose file name is computed
from the test's name at run time: no rule names it, DryCI observes the read."""

from pathlib import Path

from shop.cart import Cart

EXPECTED = Path(__file__).parent / "expected"


def test_receipt_matches_the_expected_text(request):
    cart = Cart()
    cart.add("bread", 2)
    cart.add("apple")
    lines = [f"{qty} x {cart.products[sku].name}" for sku, qty in cart.lines.items()]
    lines.append(f"total {cart.total_cents() / 100:.2f} EUR")
    expected = (EXPECTED / f"{request.node.name}.txt").read_text()
    assert "\n".join(lines) + "\n" == expected
