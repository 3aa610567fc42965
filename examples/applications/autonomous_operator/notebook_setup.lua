-- APP_MODEL, a TEST MODEL for the commander and its sub-agents: the commander triages, then
-- refunds (refund items) or replies (questions); reading the item with string patterns.
APP_MODEL = function(messages, tools)
  local system, last = messages[1].text, messages[#messages]
  if system:find("You are the triage agent", 1, true) then return "Act on it." end
  if system:find("You are the reply writer", 1, true) then return "Your order ships on Monday." end
  local item = messages[2].text
  local customer = item:match('"customer": "([^"]+)"')
  local done = 0
  for i = 2, #messages do if messages[i].role == "tool" then done = done + 1 end end
  if done == 0 then return {tool_calls = {{name = "triage", arguments = {input = item}}}} end
  if item:find('"refund"', 1, true) then
    if done == 1 then
      return {tool_calls = {{name = "issue_refund", arguments = {customer = customer, amount = tonumber(item:match('"amount": ([%d.]+)'))}}}}
    end
    return "Refund handled for " .. customer .. "."
  end
  if done == 1 then return {tool_calls = {{name = "reply_writer", arguments = {input = item}}}} end
  if done == 2 then return {tool_calls = {{name = "send_reply", arguments = {customer = customer, text = last.text}}}} end
  return "Replied to " .. customer .. "."
end
