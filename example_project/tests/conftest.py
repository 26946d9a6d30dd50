import pytest


@pytest.fixture
def euros():
    """Formats cents as euros, for readable assertion messages."""
    return lambda cents: f"{cents / 100:.2f} EUR"
