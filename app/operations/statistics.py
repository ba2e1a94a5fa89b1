"""Sample statistics of measurements, as spreadsheets compute them (STDEV.S, VAR.S, PERCENTILE.INC, SKEW, KURT).

Each function takes the values sorted ascending, as Decimals, and returns a Decimal,
or None where the statistic is undefined for so few values (or no spread).
"""
from decimal import Decimal


def mean(values: list[Decimal]) -> Decimal:
    return sum(values) / len(values)


def percentile(fraction: str):
    """The PERCENTILE.INC of sorted values: linear interpolation between the closest ranks."""
    def compute(values: list[Decimal]) -> Decimal:
        position = (len(values) - 1) * Decimal(fraction)
        lower = int(position)
        upper = min(lower + 1, len(values) - 1)
        return values[lower] + (values[upper] - values[lower]) * (position - lower)
    return compute


def variance(values: list[Decimal]) -> Decimal | None:
    if len(values) < 2:
        return None
    average = mean(values)
    return sum((value - average) ** 2 for value in values) / (len(values) - 1)


def standard_deviation(values: list[Decimal]) -> Decimal | None:
    spread = variance(values)
    return spread.sqrt() if spread is not None else None


def standardized_moment_sum(values: list[Decimal], power: int) -> Decimal | None:
    """Σ((x - mean) / s)^power, None when the spread is zero or undefined."""
    deviation = standard_deviation(values)
    if not deviation:
        return None
    average = mean(values)
    return sum(((value - average) / deviation) ** power for value in values)


def skew(values: list[Decimal]) -> Decimal | None:
    n = len(values)
    total = standardized_moment_sum(values, 3) if n >= 3 else None
    return None if total is None else Decimal(n) / ((n - 1) * (n - 2)) * total


def kurtosis(values: list[Decimal]) -> Decimal | None:
    """Excess kurtosis (0 for a normal distribution)."""
    n = len(values)
    total = standardized_moment_sum(values, 4) if n >= 4 else None
    if total is None:
        return None
    return Decimal(n * (n + 1)) / ((n - 1) * (n - 2) * (n - 3)) * total - Decimal(3 * (n - 1) ** 2) / ((n - 2) * (n - 3))


def quartile_deviation(values: list[Decimal]) -> Decimal:
    return (percentile("0.75")(values) - percentile("0.25")(values)) / 2


# code -> (display, whether the result is in the measurements' unit, function of the sorted values)
STATISTICS = {
    "average": ("Average", True, mean),
    "maximum": ("Maximum", True, max),
    "minimum": ("Minimum", True, min),
    "median": ("Median", True, percentile("0.5")),
    "std-dev": ("Standard Deviation", True, standard_deviation),
    "sum": ("Sum", True, sum),
    "variance": ("Variance", False, variance),  # in the unit squared, which UCUM codes do not spell simply
    "20-percent": ("20th Percentile", True, percentile("0.2")),
    "80-percent": ("80th Percentile", True, percentile("0.8")),
    "4-lower": ("Lower Quartile", True, percentile("0.25")),
    "4-upper": ("Upper Quartile", True, percentile("0.75")),
    "4-dev": ("Quartile Deviation", True, quartile_deviation),
    "5-1": ("1st Quintile", True, percentile("0.2")),
    "5-2": ("2nd Quintile", True, percentile("0.4")),
    "5-3": ("3rd Quintile", True, percentile("0.6")),
    "5-4": ("4th Quintile", True, percentile("0.8")),
    "skew": ("Skew", False, skew),
    "kurtosis": ("Kurtosis", False, kurtosis),
}
