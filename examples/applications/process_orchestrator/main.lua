-- Process orchestrator: a YAML mission (mission.yaml) with three parallel branches, a step
-- retried until a flaky service answers, a model assessing risk, an approval step, and a failure
-- path that is taken when the card is declined (a model writes the apology).
--   aikit run main.lua [order.json]        (or: aikit mission run mission.yaml, once the tools exist)
-- The two services the mission calls are tools defined here: reserve_stock (answers "unavailable"
-- on its first two calls, as a busy service does) and charge_card (declines cards ending in 0002).

-- %% The services the mission calls
local attempts = 0
Tool.define{name = "reserve_stock", description = "Reserve stock for an order at the warehouse service",
  params = {type = "object", required = {"sku", "quantity"},
            properties = {sku = {type = "string"}, quantity = {type = "integer", minimum = 1}}},
  fn = function(a)
    attempts = attempts + 1
    if attempts <= 2 then error("warehouse service unavailable (503), attempt " .. attempts, 0) end
    return {reserved = a.quantity, sku = a.sku, attempts = attempts}
  end}
Tool.define{name = "charge_card", description = "Charge a card through the payment service",
  params = {type = "object", required = {"card", "amount"},
            properties = {card = {type = "string"}, amount = {type = "number", minimum = 0}}},
  fn = function(a)
    if a.card:sub(-4) == "0002" then error("card declined by the issuer (insufficient funds)", 0) end
    return {charged = a.amount, receipt = "rcpt-" .. a.card:sub(-4)}
  end}

-- %% Who approves: a person (terminal), or the policy of aikit.toml when nobody can be asked
local policy = APP_APPROVE or Config.get("orchestrator.approve", "ask")
local decided = {}
local approvals = Event.subscribe("approval.requested", function(e)
  if policy == "auto" and e.payload.kind == "workflow.step" then
    decided[#decided + 1] = e.payload.name
    Workflow.approve(e.payload.run_id, e.payload.name, "policy auto")
  end
end)

-- %% Run the mission
local mission = Workflow.load("mission.yaml")
for i, layer in ipairs(mission:layers()) do print("layer " .. i .. ": " .. table.concat(layer, ", ")) end
local inputs = (arg and arg[1]) and {order = arg[1]} or nil
local record = mission:run(inputs)
approvals:remove()

-- %% What happened
local order = {}
for _, id in ipairs{"load", "reserve", "risk", "price", "approve", "charge", "ship", "apology", "record_failure"} do
  local s = record.steps[id]
  order[#order + 1] = {step = id, status = s.status, attempts = s.attempts,
                       error = s.error and s.error.message or nil}
  print(string.format("%-15s %-10s attempts %d  %s", id, s.status, s.attempts or 0, s.error and s.error.message or ""))
end
local path = record.steps.ship.status == "succeeded" and "success" or
             (record.steps.record_failure.status == "succeeded" and "failure" or "none")
Tool.call("write_file", {path = "out/run.json", create_dirs = true, content = Tool.call("to_json", {data = {
  run_id = record.run_id, status = record.status, path_taken = path, steps = order,
  approved_by_policy = decided, layers = mission:layers(), trace_id = record.steps.risk.output and record.steps.risk.output.trace_id}})})
print(string.format("mission %s: %s path taken (run %s)", record.status, path, record.run_id))
