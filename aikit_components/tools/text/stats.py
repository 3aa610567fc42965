"""Text statistics."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ...errors import InvalidArgument
from ..base import tool
from .common import MAX_TEXT, check_length

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)|\n\s*\n")
_STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
    "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having",
    "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on",
    "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should",
    "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
    "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
    "yours", "yourself", "yourselves", "s", "t", "don", "isn", "it's", "i'm"
])


@tool(category="text", security="safe", examples=[
    {"args": {"text": "The cat sat. The cat ran!\nA dog barked."},
     "result": {"characters": 39, "words": 9, "lines": 2, "sentences": 3,
                "most_common_words": [{"word": "cat", "count": 2}, {"word": "sat", "count": 1},
                                      {"word": "ran", "count": 1}, {"word": "dog", "count": 1},
                                      {"word": "barked", "count": 1}]}},
])
def text_stats(text: str, top: int = 10, exclude_stopwords: bool = True,
               words_per_minute: int = 200) -> dict[str, Any]:
    """Count characters, words, lines and sentences, and find the most common words.

    Args:
        text: The text to analyse.
        top: How many most common words to list.
        exclude_stopwords: Leave common English words (the, and, of, ...) out of the most common list.
        words_per_minute: Reading speed for the reading-time estimate.

    Returns:
        `{characters, characters_no_spaces, words, unique_words, lines, sentences, paragraphs,
        average_word_length, average_sentence_length, most_common_words: [{word, count}],
        reading_time_minutes, reading_time}`.
    """
    check_length(text, MAX_TEXT, "text")
    if top < 0:
        raise InvalidArgument(f"top must be 0 or more, got {top}")
    if words_per_minute <= 0:
        raise InvalidArgument(f"words_per_minute must be positive, got {words_per_minute}")
    words = _WORD.findall(text)
    lowered = [w.lower() for w in words]
    counts = Counter(w for w in lowered if not (exclude_stopwords and w in _STOPWORDS))
    pieces = [p for p in _SENTENCE_END.split(text) if _WORD.search(p)]
    sentences = len(pieces)
    paragraphs = len([p for p in re.split(r"\n\s*\n", text) if p.strip()])
    minutes = len(words) / words_per_minute
    total_seconds = int(round(minutes * 60))
    reading = f"{total_seconds // 60} min {total_seconds % 60} s" if total_seconds >= 60 else f"{total_seconds} s"
    return {
        "characters": len(text),
        "characters_no_spaces": sum(1 for ch in text if not ch.isspace()),
        "words": len(words),
        "unique_words": len(set(lowered)),
        "lines": len(text.splitlines()),
        "sentences": sentences,
        "paragraphs": paragraphs,
        "average_word_length": round(sum(len(w) for w in words) / len(words), 2) if words else 0.0,
        "average_sentence_length": round(len(words) / sentences, 2) if sentences else 0.0,
        "most_common_words": [{"word": w, "count": c} for w, c in counts.most_common(int(top))],
        "reading_time_minutes": round(minutes, 2),
        "reading_time": reading,
    }
