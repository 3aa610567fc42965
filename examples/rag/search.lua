-- Retrieval over the shipped corpus: ingest a directory, search it three ways, filter, and
-- keep two tenants apart. Run from the repository root: .venv/bin/aikit run examples/rag/search.lua
local corpus = RAG.collection("example_corpus", {tenant = "demo"})
local r = corpus:ingest_file("examples/rag/corpus")
print(string.format("ingested %d documents (%d chunks, %d unchanged)", r.documents, r.chunks, r.unchanged))

local question = "Which planet has the tallest volcano?"
for _, mode in ipairs{"hybrid", "vector", "lexical"} do
  local hit = corpus:search(question, {k = 1, mode = mode})[1]
  print(string.format("%-8s %-18s %.3f  %s", mode, hit.metadata.source, hit.score, hit.text:sub(1, 60)))
end

local fable = corpus:search("a story about patience", {k = 1, filter = {source = "aesop_fables.md"}})[1]
print("fable:", fable.metadata.section)

local other = RAG.collection("example_corpus", {tenant = "someone_else"})
print("other tenant sees", #other:search("volcano", {mode = "lexical"}), "chunks")

local s = corpus:stats()
print(string.format("%d documents, %d chunks, embedder %s (%d dims), index %s, lexical %s",
  s.documents, s.chunks, s.embedder.name, s.embedder.dim, s.index.kind, s.lexical))
