-- APP_MODEL, a TEST MODEL: adds the to-do item and computes the product with the tools, then
-- answers from their results, as a capable model would. APP_MESSAGE is this notebook's request.
APP_MESSAGE = "Remind me to renew the passport, and what is 17 * 23?"
APP_MODEL = function(messages, tools)
  local last = messages[#messages]
  if last.role ~= "tool" then
    return {tool_calls = {{name = "add_todo", arguments = {text = "renew the passport"}},
                          {name = "calculate", arguments = {expression = "17 * 23"}}}}
  end
  return "Added 'renew the passport' to your list. 17 * 23 = " .. last.text .. "."
end
