"""Whole numbers sent as text in URLs: counts, limits and version ids."""


def whole_number(text: str, maximum: int) -> int | None:
    """`text` as a whole number, capped at `maximum`; None unless it is ASCII digits.

    str.isdigit alone also accepts '²' and '١', and int() refuses numbers of more than
    4,300 digits, so both are checked here rather than left to fail later.

    >>> whole_number("25", 100), whole_number("99999999999999999999", 100), whole_number("²", 100)
    (25, 100, None)
    """
    if not (text.isascii() and text.isdigit()):
        return None
    return maximum if len(text) > len(str(maximum)) else min(int(text), maximum)
