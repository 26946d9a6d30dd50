import pytest
from shop.catalog import Product
from shop.pricing.discounts import line_price, percent_off


@pytest.mark.parametrize(("percent", "expected"), [(0, 1000), (10, 900), (100, 0)])
def test_percent_off(percent, expected):
    assert percent_off(1000, percent) == expected


def test_percent_out_of_range():
    with pytest.raises(ValueError):
        percent_off(1000, 150)


def test_bulk_discount():
    apple = Product("apple", "Apple", 50)
    assert line_price(apple, 9) == 450
    assert line_price(apple, 10) == 450
