-- APP_MODEL, a TEST MODEL: it answers as a capable model would, from what the agents send it.
-- The researcher searches once, then keeps the hits that mention the waggle dance as notes;
-- the writer cites the chunk ids of those notes.
APP_MODEL = function(messages, tools)
  local last = messages[#messages]
  if tools[1] and tools[1].name == "search_research_corpus" then
    if last.role ~= "tool" then
      return {tool_calls = {{name = "search_research_corpus", arguments = {query = "waggle dance"}}}}
    end
    local notes = {}
    for _, hit in ipairs(Tool.call("parse_json", {text = last.text})) do
      if hit.text:find("waggle") then notes[#notes + 1] = "[" .. hit.chunk_id .. "] " .. hit.text end
    end
    return table.concat(notes, "\n")
  end
  local ids = {}
  for id in last.text:gmatch("\n%[(%d+)%]") do ids[#ids + 1] = "[" .. id .. "]" end
  return "A forager performs the waggle dance: the angle of the run gives the direction of the flowers "
      .. "and its length the distance " .. table.concat(ids, " ") .. "."
end
