-- Knowledge base: ingests a directory of documents, answers questions with citations checked
-- against the retrieved chunks, remembers the conversation across sessions (State), and serves
-- itself to MCP clients.
--   aikit run main.lua ask "How many days of leave do I get?"
--   aikit run main.lua ask "Can I carry them over?"       (a later session: it remembers)
--   aikit mcp serve --stdio --script main.lua              (tools kb_ask and search_kb, the history as a resource)

-- %% Ingest (unchanged documents are skipped)
local kb = RAG.collection("kb", {chunk_size = 500, chunk_overlap = 0})
local ingested = kb:ingest_file(APP_CORPUS or "corpus")

-- %% The assistant and the kb_ask tool
local assistant = Agent.new{name = "kb_assistant", model = APP_MODEL, memory = true, max_steps = 4,
  collections = {kb}, budget = {tokens = 30000},
  system = "You are the knowledge base assistant. Search the knowledge base with search_kb, answer in one or "
        .. "two sentences from what it returns, and cite the chunk id of each passage you use in square "
        .. "brackets, e.g. [7]. Earlier questions of this conversation may give context."}

local function ask(question)
  local r = assistant:run(question)
  local retrieved = {}
  for _, call in ipairs(r.tool_calls or {}) do
    if type(call.result) == "table" then
      for _, hit in ipairs(call.result) do retrieved[tostring(hit.chunk_id)] = hit end
    end
  end
  local citations, unknown, seen = {}, {}, {}
  for id in r.text:gmatch("%[(%d+)%]") do
    if not seen[id] then
      seen[id] = true
      local hit = retrieved[id]
      if hit then
        citations[#citations + 1] = {chunk_id = id, source = hit.metadata.source, section = hit.metadata.section,
                                     text = hit.text}
      else
        unknown[#unknown + 1] = id
      end
    end
  end
  local answer = {question = question, answer = r.text, citations = citations, unknown_citations = unknown,
                  trace_id = r.trace_id}
  State.update("global", "kb_history", function(history)
    history = history or {}
    history[#history + 1] = {question = question, answer = r.text, cited = #citations}
    return history
  end)
  return answer
end

Tool.define{name = "kb_ask", description = "Ask the knowledge base a question; the answer cites the passages it used",
  params = {type = "object", required = {"question"}, properties = {question = {type = "string", minLength = 1}}},
  fn = function(a) return ask(a.question) end}

-- %% Serve over MCP (under `aikit mcp serve --script main.lua`; elsewhere this only records the choice)
MCP.expose{tools = {"kb_ask", "search_kb"}}

-- %% Ask (under `aikit run main.lua ask QUESTION`, or in the notebook)
local question = APP_QUESTION or (arg and arg[1] == "ask" and arg[2])
if question then
  local answer = ask(question)
  Tool.call("write_file", {path = "out/answer.json", create_dirs = true,
                           content = Tool.call("to_json", {data = answer})})
  print(answer.answer)
  for _, c in ipairs(answer.citations) do print(string.format("  [%s] %s, %s", c.chunk_id, c.source, c.section or "")) end
  print(string.format("%d question(s) in the remembered conversation; trace %s",
                      #State.get("global", "kb_history", {}), tostring(answer.trace_id)))
  if #answer.unknown_citations > 0 then error("the answer cites chunks that were never retrieved", 0) end
end
