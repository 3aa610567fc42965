-- Personal assistant: one agent with tools (a to-do list, a calculator, the clock) that remembers
-- the conversation and the to-do list across sessions (State), within a budget per turn.
--   aikit run main.lua "Remind me to renew the passport, and what is 17 * 23?"
--   aikit run main.lua "What is on my list?"          (a later session: it remembers)
--   aikit run main.lua --forget                         (drop the conversation; the list stays)

-- %% Tools over State: the to-do list survives the session
local SCOPE = "user:" .. Config.get("assistant.user", "me")
Tool.define{name = "add_todo", description = "Add an item to the user's to-do list",
  params = {type = "object", required = {"text"}, properties = {text = {type = "string", minLength = 1}}},
  fn = function(a)
    local todos = State.update(SCOPE, "todos", function(list)
      list = list or {}
      list[#list + 1] = {text = a.text, done = false}
      return list
    end)
    return {added = a.text, count = #todos}
  end}
Tool.define{name = "list_todos", description = "The user's to-do list", idempotent = true,
  params = {type = "object", properties = {}},
  fn = function() return State.get(SCOPE, "todos", {}) end}
Tool.define{name = "complete_todo", description = "Mark an item of the to-do list done",
  params = {type = "object", required = {"text"}, properties = {text = {type = "string"}}},
  fn = function(a)
    local found = false
    State.update(SCOPE, "todos", function(list)
      for _, item in ipairs(list or {}) do if item.text == a.text then item.done, found = true, true end end
      return list or {}
    end)
    return {done = found}
  end}

-- %% The assistant: memory across sessions, a budget for each turn
local assistant = Agent.new{name = "assistant", model = APP_MODEL, memory = true, max_steps = 6,
  tools = {"add_todo", "list_todos", "complete_todo", "calculate", "datetime_now"},
  budget = {tokens = Config.get("assistant.tokens_per_turn", 20000),
            tool_calls = Config.get("assistant.tool_calls_per_turn", 6)},
  system = "You are the personal assistant. Use the tools for the to-do list, arithmetic and the date; "
        .. "remember what the user told you earlier; answer briefly."}

-- %% One turn
local message = APP_MESSAGE or (arg and arg[1]) or "What is on my list?"
if message == "--forget" then
  assistant:forget()
  print("conversation forgotten; the to-do list stays")
  return
end
local ok, r = pcall(assistant.run, assistant, message)
local turn
if ok then
  turn = {status = "answered", text = r.text, tool_calls = #(r.tool_calls or {}), tokens = r.usage.total_tokens,
          trace_id = r.trace_id, budget = r.budget}
  print(r.text)
elseif type(r) == "table" and r.code == "budget_exceeded" then
  turn = {status = "budget_exceeded", budget = r.details.budget, limit = r.details.limit, used = r.details.used}
  print(string.format("stopped: the %s budget of this turn (%s) is used up", r.details.budget, tostring(r.details.limit)))
else
  error(r, 0)
end
turn.message = message
turn.todos = State.get(SCOPE, "todos", {})
turn.remembered_messages = #(State.get("agent:assistant", "memory") or {})
Tool.call("write_file", {path = "out/last-turn.json", create_dirs = true, content = Tool.call("to_json", {data = turn})})
print(string.format("%d item(s) on the list; %d message(s) remembered", #turn.todos, turn.remembered_messages))
