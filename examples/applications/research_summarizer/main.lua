-- Research summarizer: two agents over a local corpus (RAG).
--   aikit run main.lua ["question"] [corpus_dir]
-- The researcher searches the corpus (its search tool returns passages with their chunk ids) and
-- hands over notes; the writer answers from the notes only, citing chunk ids in square brackets.
-- The app then checks every citation against the chunks the researcher actually retrieved and
-- writes out/answer.md and out/citations.json. The model is APP_MODEL when a notebook sets it (a test
-- model), else aikit's default model (see README.md).

-- %% Ingest the corpus
local question = arg and arg[1] or "How do honeybees tell each other where the flowers are?"
local corpus_dir = arg and arg[2] or "corpus"
local corpus = RAG.collection("research_corpus", {chunk_size = 400, chunk_overlap = 0})
local ingested = corpus:ingest_file(corpus_dir)
print(string.format("corpus: %d documents, %d chunks", corpus:stats().documents, corpus:stats().chunks))

-- %% The two agents
local researcher = Agent.new{name = "researcher", model = APP_MODEL, max_steps = 4, collections = {corpus},
  budget = {tokens = 20000},
  system = "You are the researcher. Search the corpus with search_research_corpus for the passages that "
        .. "answer the question, then list them as notes, each starting with its chunk id in square "
        .. "brackets, e.g. [12] text. Use only what the search returned."}
local writer = Agent.new{name = "writer", model = APP_MODEL, max_steps = 1, budget = {tokens = 20000},
  system = "You are the writer. Answer the question in two or three sentences from the researcher's notes "
        .. "only, citing after each sentence the chunk ids it uses in square brackets."}

-- %% Research, then write
local research = researcher:run(question)
local retrieved = {}  -- chunk id -> the hit the search tool returned
for _, call in ipairs(research.tool_calls or {}) do
  if type(call.result) == "table" then
    for _, hit in ipairs(call.result) do retrieved[tostring(hit.chunk_id)] = hit end
  end
end
local written = writer:run("Question: " .. question .. "\n\nResearcher's notes:\n" .. research.text)

-- %% Check the citations and write the report
local citations, unknown, seen = {}, {}, {}
for id in written.text:gmatch("%[([^%]]+)%]") do
  if not seen[id] then
    seen[id] = true
    local hit = retrieved[id]
    if hit then
      citations[#citations + 1] = {chunk_id = id, document_id = hit.document_id,
                                   source = hit.metadata.source, text = hit.text}
    else
      unknown[#unknown + 1] = id
    end
  end
end
local trace_id = written.trace_id or research.trace_id
local lines = {"# " .. question, "", written.text, "", "## Sources", ""}
for i, c in ipairs(citations) do
  lines[#lines + 1] = string.format("%d. `%s` (%s): %s", i, c.chunk_id, c.source, c.text:gsub("%s+", " "):sub(1, 160))
end
lines[#lines + 1] = ""
lines[#lines + 1] = "Trace: " .. tostring(trace_id)
Tool.call("make_directory", {path = "out"})
Tool.call("write_file", {path = "out/answer.md", content = table.concat(lines, "\n") .. "\n"})
Tool.call("write_file", {path = "out/citations.json", content = Tool.call("to_json", {indent = 2, data = {
  question = question, answer = written.text, citations = citations, unknown_citations = unknown,
  trace_id = trace_id, models = {researcher = research.model, writer = written.model},
  tokens = research.usage.total_tokens + written.usage.total_tokens}})})

print(written.text)
print(string.format("%d citation(s) checked against the retrieved chunks, %d unknown", #citations, #unknown))
for _, c in ipairs(citations) do print("  [" .. c.chunk_id .. "] " .. c.source) end
print("trace " .. tostring(trace_id) .. "  (aikit trace show " .. tostring(trace_id) .. ")")
if #citations == 0 or #unknown > 0 then
  error("the answer's citations do not match the retrieved chunks", 0)
end
