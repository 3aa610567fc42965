"""Chunkers: every kind, overlap, boundaries and offsets (text[start:end] == chunk.text)."""

from __future__ import annotations

import pytest

from aikit_components.errors import InvalidArgument
from aikit_components.rag.chunking import ChunkOptions, chunk_text


def check_offsets(text: str, chunks: list) -> None:
    for c in chunks:
        assert text[c.start:c.end] == c.text and c.text == c.text.strip() and c.text


class TestFixed:
    def test_windows_step_by_size_minus_overlap(self) -> None:
        text = "".join(chr(ord("a") + i % 26) for i in range(100))
        chunks = chunk_text(text, ChunkOptions("fixed", size=30, overlap=10))
        assert [(c.start, c.end) for c in chunks] == [(0, 30), (20, 50), (40, 70), (60, 90), (80, 100)]
        assert chunks[0].text[-10:] == chunks[1].text[:10]  # the overlap is shared text
        check_offsets(text, chunks)

    def test_no_overlap_covers_the_text_once(self) -> None:
        text = "x" * 95
        chunks = chunk_text(text, ChunkOptions("fixed", size=30, overlap=0))
        assert "".join(c.text for c in chunks) == text and len(chunks) == 4

    def test_by_tokens_uses_the_model_tokenizer(self) -> None:
        text = " ".join(f"word{i}" for i in range(200))
        chunks = chunk_text(text, ChunkOptions("fixed", size=50, overlap=10, unit="tokens"))
        from aikit_components.rag.chunking import token_counter

        counts = [len(token_counter().encode(c.text, add_special_tokens=False).ids) for c in chunks]
        assert max(counts) <= 51 and min(counts[:-1]) >= 45 and len(chunks) > 3
        check_offsets(text, chunks)


class TestSentence:
    def test_sentences_are_never_cut(self) -> None:
        sentences = [f"Sentence number {i} says something short." for i in range(20)]
        text = " ".join(sentences)
        chunks = chunk_text(text, ChunkOptions("sentence", size=120, overlap=0))
        assert len(chunks) > 3
        for c in chunks:
            assert c.text.endswith(".") and c.text.startswith("Sentence") and len(c.text) <= 120
        assert " ".join(c.text for c in chunks) == text

    def test_overlap_repeats_the_last_sentence(self) -> None:
        text = " ".join(f"S{i} is here." for i in range(12))
        chunks = chunk_text(text, ChunkOptions("sentence", size=40, overlap=15))
        for a, b in zip(chunks, chunks[1:]):
            assert b.text.split(".")[0] + "." in a.text  # b starts with a's last sentence

    def test_long_sentence_falls_back_to_fixed(self) -> None:
        text = "a" * 250 + ". Short one."
        chunks = chunk_text(text, ChunkOptions("sentence", size=100, overlap=0))
        assert max(len(c.text) for c in chunks) <= 100 and chunks[-1].text == "Short one."


class TestMarkdown:
    DOC = ("# Guide\n\nIntro text.\n\n## Install\n\nRun pip.\n\n```sh\n# not a heading\npip install x\n```\n\n"
           "## Use\n\nCall it.\n")

    def test_one_chunk_per_section_with_the_heading_path(self) -> None:
        chunks = chunk_text(self.DOC, ChunkOptions("markdown", size=500, overlap=0))
        assert [c.metadata["section"] for c in chunks] == ["Guide", "Guide > Install", "Guide > Use"]
        assert "# not a heading" in chunks[1].text  # a code fence is not split at its # line
        check_offsets(self.DOC, chunks)

    def test_auto_picks_markdown_by_extension(self) -> None:
        assert chunk_text(self.DOC, ChunkOptions(size=500), kind_hint="README.md")[0].metadata == {"section": "Guide"}

    def test_long_section_is_split_by_sentences(self) -> None:
        doc = "# Big\n\n" + " ".join(f"Fact {i} is true." for i in range(40))
        chunks = chunk_text(doc, ChunkOptions("markdown", size=100, overlap=0))
        assert len(chunks) > 3 and all(c.metadata["section"] == "Big" for c in chunks)


class TestCode:
    SRC = ("import os\n\n\ndef alpha(x):\n    return x + 1\n\n\nclass Beta:\n    def go(self):\n        return 2\n\n\n"
           "def gamma():\n    # comment\n\n    return 3\n")

    def test_blocks_start_at_definitions_with_symbol_and_line(self) -> None:
        chunks = chunk_text(self.SRC, ChunkOptions("code", size=60, overlap=0), kind_hint="m.py")
        symbols = [c.metadata.get("symbol") for c in chunks]
        assert "alpha" in symbols and "Beta" in symbols and "gamma" in symbols
        gamma = next(c for c in chunks if c.metadata.get("symbol") == "gamma")
        assert gamma.text.startswith("def gamma") and "return 3" in gamma.text  # a blank line inside stays
        assert gamma.metadata["line"] == self.SRC[:gamma.start].count("\n") + 1 and gamma.metadata["language"] == "python"
        check_offsets(self.SRC, chunks)

    def test_small_blocks_are_packed_together(self) -> None:
        chunks = chunk_text(self.SRC, ChunkOptions("code", size=1000, overlap=0), kind_hint="m.py")
        assert len(chunks) == 1


@pytest.mark.parametrize("opts", [dict(kind="nope"), dict(size=0), dict(size=10, overlap=10), dict(unit="words")])
def test_bad_options_are_invalid_arguments(opts: dict) -> None:
    with pytest.raises(InvalidArgument):
        ChunkOptions(**opts)


def test_whitespace_only_text_gives_no_chunk() -> None:
    assert chunk_text("   \n\n  ", ChunkOptions("sentence")) == []
