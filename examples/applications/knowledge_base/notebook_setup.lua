-- APP_MODEL, a TEST MODEL: searches with the question, then answers with the sentence of the first
-- hit that mentions leave days, citing that hit's chunk id (a capable model's behaviour, scripted).
-- It reads the search results with string patterns, not Tool.call (see the file organizer's README).
APP_QUESTION = "How many days of paid leave do I get?"
APP_MODEL = function(messages, tools)
  local last = messages[#messages]
  if last.role ~= "tool" then
    return {tool_calls = {{name = "search_kb", arguments = {query = last.text, k = 5}}}}
  end
  for text, id in last.text:gmatch('"text": "(.-)", "document_id": "[^"]*", "chunk_id": (%d+)') do
    local sentence = text:match("(Everyone gets 25 days[^.]*%.)")
    if sentence then return sentence .. " [" .. id .. "]" end
  end
  return "The knowledge base does not say."
end
