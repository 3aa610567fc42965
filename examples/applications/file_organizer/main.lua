-- File organizer: an agent classifies the files of a sandboxed directory and moves them into
-- folders, with a person's approval before every move.
--   aikit run main.lua [sandbox_dir]
-- The sandbox (default sandbox/, filled from inputs/inbox/ on the first run) is enforced by a
-- tool.before hook: a move or a new directory outside it is cancelled before it can run, whatever
-- the model asks. Moves need approval (Agent.new{approve = {"move_file"}}): on a terminal aikit
-- asks you; elsewhere the run pauses and the approval policy of aikit.toml
-- ([organizer] approve_moves) decides: "ask" leaves it paused for `aikit approvals approve RUN`,
-- "inside_sandbox" approves the moves that stay inside the sandbox and denies the rest (a notebook
-- may set APP_APPROVE_MOVES instead).

-- %% The sandbox
local sandbox = (arg and arg[1] or "sandbox"):gsub("/+$", "")
local policy = APP_APPROVE_MOVES or Config.get("organizer.approve_moves", "ask")
if not pcall(Tool.call, "file_stat", {path = sandbox}) then
  Tool.call("copy_file", {source = "inputs/inbox", destination = sandbox})
end

local function inside(path)
  -- a relative path below the sandbox, with no `..` step and no absolute start
  if type(path) ~= "string" or path:sub(1, 1) == "/" then return false end
  for part in path:gmatch("[^/]+") do if part == ".." then return false end end
  return path:sub(1, #sandbox + 1) == sandbox .. "/"
end

local guarded = {move_file = {"source", "destination"}, make_directory = {"path"}}
local cancelled = {}
local guard = Hook.register("tool.before", function(ctx)
  local fields = guarded[ctx.payload.name]
  if not fields then return end
  for _, field in ipairs(fields) do
    local path = ctx.payload.args[field]
    if not inside(path) then
      cancelled[#cancelled + 1] = {tool = ctx.payload.name, [field] = path}
      return Hook.cancel(string.format("%s is outside the sandbox %s/", tostring(path), sandbox))
    end
  end
end, {name = "sandbox_guard", priority = 100})

-- %% The organizer agent
local organizer = Agent.new{name = "organizer", model = APP_MODEL, max_steps = 6,
  tools = {"list_directory", "make_directory", "move_file"}, approve = {"move_file"},
  budget = {tool_calls = 40, tokens = 30000},
  system = "You are the file organizer. List the files of the sandbox directory, then move each file into "
        .. "a folder of the sandbox named after its kind (documents, spreadsheets, code), creating the "
        .. "folders first. Never touch anything outside the sandbox. Finish with one line per move."}

-- %% Run, deciding the approvals by policy when nobody can be asked
local decisions = {}
local r = organizer:run("Organize the directory " .. sandbox .. "/")
while r.status == "needs_approval" do
  if policy ~= "inside_sandbox" then
    print(string.format("paused for approval: aikit approvals approve %s   (or deny; [organizer] approve_moves = %q)",
                        r.run_id, policy))
    for _, call in ipairs(r.pending) do print("  " .. call.call_id, call.name, Tool.call("to_json", {data = call.args})) end
    return
  end
  local approve, deny = {}, {}
  for _, call in ipairs(r.pending) do
    local ok = inside(call.args.source) and inside(call.args.destination)
    table.insert(ok and approve or deny, call.call_id)
    decisions[#decisions + 1] = {call_id = call.call_id, source = call.args.source,
                                 destination = call.args.destination, decision = ok and "approved" or "denied"}
  end
  r = Agent.resume(r.run_id, {approve = approve, deny = deny, reason = "policy " .. policy})
end
guard:remove()

-- %% Report
local listing = Tool.call("list_directory", {path = sandbox, recursive = true})
local report = {sandbox = sandbox, policy = policy, status = r.status, run_id = r.run_id, summary = r.text,
                decisions = decisions, cancelled = cancelled, trace_id = r.trace_id,
                tool_calls = #(r.tool_calls or {})}
Tool.call("write_file", {path = "out/organizer-report.json", create_dirs = true,
                         content = Tool.call("to_json", {data = report})})
print(r.text)
print(string.format("%d move(s) decided by policy, %d cancelled by the sandbox guard; trace %s",
                    #decisions, #cancelled, tostring(r.trace_id)))
