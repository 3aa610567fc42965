"""Retrieval quality: recall@k of a collection over questions whose answering passage is known."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["load_questions", "recall_at_k"]


def load_questions(path: Path) -> list[dict[str, Any]]:
    """``questions.json``: ``{"questions": [{"question", "source", "passage"}, ...]}``."""
    return json.loads(Path(path).read_text())["questions"]


def answered(hits: list[dict[str, Any]], question: dict[str, Any]) -> bool:
    """A hit from the question's source file that contains its passage."""
    return any(h["metadata"].get("source") == question["source"] and question["passage"] in h["text"] for h in hits)


async def recall_at_k(collection: Any, questions: list[dict[str, Any]], k: int = 5, mode: str = "hybrid") -> dict[str, Any]:
    """``{recall, answered, total, missed}`` for ``mode`` over ``questions``."""
    missed = []
    for q in questions:
        if not answered(await collection.asearch(q["question"], k=k, mode=mode), q):
            missed.append(q["question"])
    total = len(questions)
    return {"recall": (total - len(missed)) / total if total else 0.0, "answered": total - len(missed),
            "total": total, "missed": missed}
