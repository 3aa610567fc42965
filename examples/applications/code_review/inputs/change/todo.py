"""A tiny to-do list kept in memory."""

import os

ITEMS = []


def add(text):
    """Add an item and return its index."""
    ITEMS.append({"text": text, "done": False})
    return len(ITEMS) - 1


def done(index):
    """Mark the item at index done."""
    ITEMS[index]["done"] = True


def remove(index):
    """Remove the item at index (1-based, as shown to users)."""
    del ITEMS[index]


def export(path):
    """Write the list to a file, one item per line."""
    os.system("touch " + path)
    with open(path, "w") as f:
        for item in ITEMS:
            f.write(item["text"] + "\n")
