-- Autonomous operator: the human-out-of-the-loop cycle (sense, decide, plan, run, gate, score,
-- observe) over a directory of work items. A commander agent with two sub-agents (a triage agent
-- and a writer, as its tools) decides and acts on each new item; refunds above the autonomous limit
-- are gated (approval, denied by policy and escalated); each outcome is scored; every decision is
-- a tool call in the audit ledger; an item of kind "stop" (or `aikit.stop` from anywhere) pulls the
-- kill switch and the operator stops.
--   aikit run main.lua [inbox_dir]

-- %% Sense: the inbox (filled from inputs/inbox/ on the first run)
local inbox = arg and arg[1] or "inbox"
local limit = Config.get("operator.refund_limit", 100)
if not pcall(Tool.call, "file_stat", {path = inbox}) then
  Tool.call("copy_file", {source = "inputs/inbox", destination = inbox})
end
local stopped = false
local stops = Event.subscribe("aikit.stopped", function(e) stopped = true end)

-- %% Tools: acting, and recording decisions (each call is an audit ledger entry)
Tool.define{name = "issue_refund", description = "Refund a customer (amounts above the autonomous limit need approval)",
  params = {type = "object", required = {"customer", "amount"},
            properties = {customer = {type = "string"}, amount = {type = "number", minimum = 0}}},
  approval = function(call)
    if call.args.amount > limit then return "refund above the autonomous limit of " .. limit end
  end,
  fn = function(a)
    State.update("global", "operator_refunds", function(list) list = list or {} list[#list + 1] = a return list end)
    return {refunded = a.amount, customer = a.customer}
  end}
Tool.define{name = "send_reply", description = "Send a reply to a customer",
  params = {type = "object", required = {"customer", "text"}, properties = {customer = {type = "string"}, text = {type = "string"}}},
  fn = function(a) return {sent = true, customer = a.customer, chars = #a.text} end}
Tool.define{name = "record_decision", description = "Record the operator's decision on an item",
  params = {type = "object", required = {"item", "action", "score"},
            properties = {item = {type = "string"}, action = {type = "string"}, score = {type = "number"}, why = {type = "string"}}},
  fn = function(a) return a end}

-- %% The commander and its sub-agents
local triage = Agent.new{name = "triage", model = APP_MODEL, max_steps = 1, budget = {tokens = 10000},
  system = "You are the triage agent. Given a work item, say in one line what should be done."}
triage:as_tool("Triage a work item: what should be done with it")
local writer = Agent.new{name = "reply_writer", model = APP_MODEL, max_steps = 1, budget = {tokens = 10000},
  system = "You are the reply writer. Write a short, polite reply to the customer's question."}
writer:as_tool("Write a reply to a customer's question")
local commander = Agent.new{name = "commander", model = APP_MODEL, max_steps = 5,
  tools = {"triage", "reply_writer", "issue_refund", "send_reply"},
  budget = {tokens = 40000, tool_calls = 8},
  system = "You are the commander of an autonomous operator. For each work item: ask triage, then act "
        .. "with issue_refund or send_reply (ask reply_writer for the text). Finish with one line saying what you did."}

-- %% The loop: decide, plan, run, gate, score, observe
local function score(item, r, escalated)
  if r.status == "done" and not escalated then return 1.0 end
  if escalated then return 0.5 end  -- the gate held: a person will decide
  return 0.0
end
local handled = {}
local listing = Tool.call("list_directory", {path = inbox})
table.sort(listing.entries, function(a, b) return a.name < b.name end)
for _, entry in ipairs(listing.entries) do
  if stopped then break end
  local item = Tool.call("parse_json", {path = inbox .. "/" .. entry.name})
  if item.kind == "stop" then
    Event.publish("aikit.stop", {by = item.by or "a stop item"})
    Event.dispatch()
    handled[#handled + 1] = {item = item.id, action = "stop", score = 1.0}
    Tool.call("record_decision", {item = item.id, action = "stop", score = 1.0, why = "kill switch pulled by " .. tostring(item.by)})
  else
    local r = commander:run(Tool.call("to_json", {data = item}))
    local escalated = false
    if r.status == "needs_approval" then  -- the gate: nobody is asked, the policy denies and escalates
      escalated = true
      Tool.call("write_file", {path = "out/escalations/" .. item.id .. ".json", create_dirs = true,
                               content = Tool.call("to_json", {data = {item = item, pending = r.pending}})})
      r = Agent.resume(r.run_id, {deny = "*", reason = "above the autonomous limit: escalated to a person"})
    end
    local s = score(item, r, escalated)
    local action = escalated and "escalated" or (r.tool_calls and #r.tool_calls > 0 and r.tool_calls[#r.tool_calls].name or "none")
    Tool.call("record_decision", {item = item.id, action = action, score = s, why = r.text})
    State.update("global", "operator_scores", function(list) list = list or {} list[#list + 1] = s return list end)
    Event.publish("operator.item", {item = item.id, action = action, score = s})
    handled[#handled + 1] = {item = item.id, action = action, score = s, answer = r.text, trace_id = r.trace_id}
    print(string.format("%s  %-10s score %.1f  %s", item.id, action, s, r.text))
  end
end
stops:remove()

-- %% Report
local unhandled = {}
for _, entry in ipairs(listing.entries) do
  local seen = false
  for _, h in ipairs(handled) do if entry.name:sub(1, #h.item) == h.item then seen = true end end
  if not seen then unhandled[#unhandled + 1] = entry.name end
end
Tool.call("write_file", {path = "out/operator-report.json", create_dirs = true, content = Tool.call("to_json", {data = {
  handled = handled, unhandled = unhandled, stopped = stopped,
  refunds = State.get("global", "operator_refunds", {})}})})
print(string.format("%d item(s) handled, %d left%s", #handled, #unhandled, stopped and " (stopped by the kill switch)" or ""))
