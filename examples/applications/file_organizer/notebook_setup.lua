-- APP_MODEL, a TEST MODEL: lists the sandbox, then moves each file by its extension (and tries one
-- move out of the sandbox, which the guard cancels), then reports. It reads the listing with string
-- patterns, not Tool.call: a tool call made inside a Lua model function while a Lua hook is
-- registered waits for the Lua thread that runs the model (an aikit limitation, see README.md).
APP_MODEL = function(messages, tools)
  local last = messages[#messages]
  if last.role == "user" then
    return {tool_calls = {{name = "list_directory", arguments = {path = "sandbox"}}}}
  end
  if last.text:find('"entries"', 1, true) then
    local kinds = {txt = "documents", md = "documents", csv = "spreadsheets", py = "code", sh = "code"}
    local calls, made = {}, {}
    for name in last.text:gmatch('"name": "([^"/]+)"') do
      local folder = kinds[name:match("%.(%w+)$") or ""]
      if folder then
        if not made[folder] then
          made[folder] = true
          calls[#calls + 1] = {name = "make_directory", arguments = {path = "sandbox/" .. folder}}
        end
        calls[#calls + 1] = {name = "move_file", arguments = {source = "sandbox/" .. name,
                                                             destination = "sandbox/" .. folder .. "/" .. name}}
      end
    end
    calls[#calls + 1] = {name = "move_file", arguments = {source = "sandbox/todo.md", destination = "../todo.md"}}
    return {tool_calls = calls}
  end
  return "Moved the files into documents/, spreadsheets/ and code/."
end

-- Nobody can answer an approval question while nbclient runs this notebook: decide moves by policy.
APP_APPROVE_MOVES = "inside_sandbox"
