"""The local embedding model is loaded once per process and shared by every collection of every
RAG (and every Components) in it: a second copy would cost its load time and ~90 MB."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from aikit_components.rag import RAG
from aikit_components.rag.embedders import local_model
from aikit_components.rag.minilm import MiniLMEncoder


def loaded_models() -> list[MiniLMEncoder]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, MiniLMEncoder)]


def test_two_rags_on_threads_share_one_loaded_model(tmp_path: Path) -> None:
    rags = [RAG(tmp_path / f"rag{i}") for i in range(2)]
    try:
        found: list[str] = []
        errors: list[BaseException] = []

        def use(rag: RAG, i: int) -> None:
            try:
                col = rag.collection(f"c{i}")
                col.ingest([{"id": "tea", "text": "Green tea is steeped at 80 degrees."},
                            {"id": "bread", "text": "Bread dough rises while yeast ferments."}])
                found.append(col.search("how hot is the water for tea", k=1, mode="vector")[0]["document_id"])
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=use, args=(rag, i)) for i, rag in enumerate(rags)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert found == ["tea", "tea"]
        models = loaded_models()
        assert len(models) == 1
        assert models[0] is local_model()
    finally:
        for rag in rags:
            rag.close()
