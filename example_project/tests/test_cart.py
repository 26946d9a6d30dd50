import pytest
from shop.cart import Cart


@pytest.fixture
def cart() -> Cart:
    return Cart()


def test_empty_cart_costs_nothing(cart):
    assert cart.total_cents() == 0


def test_total_includes_tax(cart, euros):
    cart.add("bread", 2)
    assert euros(cart.total_cents()) == "6.00 EUR"


def test_unknown_product_is_refused(cart):
    with pytest.raises(KeyError):
        cart.add("caviar")
