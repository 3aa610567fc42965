"""Kitchen helpers: unit conversion and cooking times (example source code for the corpus)."""


def celsius_to_fahrenheit(celsius):
    """Convert an oven temperature from degrees Celsius to degrees Fahrenheit."""
    return celsius * 9 / 5 + 32


def boil_egg_minutes(style):
    """Minutes to boil an egg: soft-boiled eggs take 6 minutes, medium 8, hard-boiled 10."""
    return {"soft": 6, "medium": 8, "hard": 10}[style]


class BreadDough:
    """Bread dough rises when yeast ferments sugar into carbon dioxide gas; knead it ten minutes
    and let it prove for an hour in a warm place until it doubles in size."""

    def __init__(self, flour_grams, water_grams):
        self.flour_grams = flour_grams
        self.water_grams = water_grams

    def hydration(self):
        """Hydration is the weight of water divided by the weight of flour, as a percentage."""
        return 100 * self.water_grams / self.flour_grams
