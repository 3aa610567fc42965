"""A tiny to-do list kept in memory."""

ITEMS = []


def add(text):
    """Add an item and return its index."""
    ITEMS.append({"text": text, "done": False})
    return len(ITEMS) - 1


def done(index):
    """Mark the item at index done."""
    ITEMS[index]["done"] = True
