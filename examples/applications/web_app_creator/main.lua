-- Web app creator: 21 agents in six supervised groups (requirements, architecture,
-- implementation, tests, docs, review) write a small web application (a to-do API for WSGI, with
-- its own test suite) into out/todo_app/, run that application's tests, feed failures back to the
-- implementation group until they pass or the rounds or the budget run out, and write a report
-- with the trace id.
--   aikit run main.lua [output_dir]
-- Each group is a lead agent supervising its members: the members are the lead's tools
-- (agent:as_tool), the lead delegates to them and merges their work. A workflow coordinates the
-- groups (implementation and tests in parallel, then docs and review in parallel).

-- %% The groups: 6 leads, 15 members
local out = arg and arg[1] or "out/todo_app"
local max_rounds = Config.get("webapp.max_fix_rounds", 3)
local groups = {
  {name = "requirements", lead = "requirements_lead", members = {"analyst", "user_advocate"},
   task = "Write REQUIREMENTS.md for the application: the endpoints a user needs and what each returns."},
  {name = "architecture", lead = "architecture_lead", members = {"api_designer", "data_modeler"},
   task = "Write ARCHITECTURE.md: modules, data model, HTTP routes and status codes."},
  {name = "implementation", lead = "implementation_lead", members = {"model_dev", "store_dev", "handler_dev", "router_dev"},
   task = "Write todo_api.py, a WSGI application `app` using only the Python standard library. Answer with the whole file in a ```python fence."},
  {name = "tests", lead = "test_lead", members = {"unit_tester", "api_tester", "edge_tester"},
   task = "Write test_todo_api.py, unittest tests calling todo_api.app through wsgiref. Answer with the whole file in a ```python fence."},
  {name = "docs", lead = "docs_lead", members = {"readme_writer", "api_doc_writer"},
   task = "Write README.md for the application: what it is, how to run it and its tests, the endpoints."},
  {name = "review", lead = "review_lead", members = {"security_reviewer", "quality_reviewer"},
   task = "Write REVIEW.md: the review of the code and tests, findings first."},
}
local leads, agents = {}, 0
for _, g in ipairs(groups) do
  local members = {}
  for _, m in ipairs(g.members) do
    local member = Agent.new{name = m, model = APP_MODEL, max_steps = 1, budget = {tokens = 20000},
      system = "You are the " .. m .. " of the " .. g.name .. " group of a team writing a small web application. "
            .. "Answer your lead's request with your part, briefly."}
    member:as_tool("The " .. m .. " of the " .. g.name .. " group: give it a request, it answers with its part.")
    members[#members + 1] = m
    agents = agents + 1
  end
  leads[g.name] = Agent.new{name = g.lead, model = APP_MODEL, max_steps = 4, tools = members,
    budget = {tokens = 60000, tool_calls = 10},
    system = "You are the " .. g.lead .. ", leading the " .. g.name .. " group (" .. table.concat(members, ", ")
          .. "). Delegate parts of the task to your members (they are your tools), then merge their work. "
          .. g.task}
  agents = agents + 1
end
print(string.format("%d agents in %d groups", agents, #groups))

-- %% The mission's steps
local function fenced(text)
  return text:match("```python\n(.-)```") or text
end
local trace_id
local function run_group(name, input)
  local r = leads[name]:run(input)
  trace_id = trace_id or r.trace_id
  return r.text
end
local rounds = {}
local function build_and_test(params, ctx)
  local code, tests = fenced(ctx.steps.implementation.output), fenced(ctx.steps.tests.output)
  Tool.call("write_file", {path = out .. "/test_todo_api.py", content = tests, create_dirs = true})
  for round = 1, max_rounds do
    Tool.call("write_file", {path = out .. "/todo_api.py", content = code, create_dirs = true})
    local ran, r = pcall(Tool.call, "run_process", {command = {"python3", "-m", "unittest", "-v", "test_todo_api"},
                                                    cwd = out, timeout_s = 60})
    if not ran and type(r) == "table" and r.code == "permission_denied" then
      -- a notebook outside this directory: no aikit.toml lets python3 run (see README.md)
      return {passed = false, rounds = 0, code = code, not_run = r.message}
    elseif not ran then
      error(r, 0)
    end
    local summary = r.stderr:match("(Ran %d+ tests?[^\n]*)") or ("exit " .. r.exit_code)
    rounds[#rounds + 1] = {round = round, exit_code = r.exit_code, summary = summary,
                           failures = select(2, r.stderr:gsub("\nFAIL: ", "")) + select(2, r.stderr:gsub("\nERROR: ", ""))}
    print(string.format("round %d: tests exit %d (%s)", round, r.exit_code, summary))
    if r.exit_code == 0 then return {passed = true, rounds = round, code = code} end
    if round == max_rounds then break end
    local ok, fixed = pcall(run_group, "implementation", "The tests failed. Fix todo_api.py; answer with the whole file "
      .. "in a ```python fence.\n\nCurrent todo_api.py:\n```python\n" .. code .. "```\n\nTest output:\n" .. r.stderr)
    if not ok then  -- the budget (or another stop) ends the loop: reported, not hidden
      rounds[#rounds].stopped = tostring(fixed)
      return {passed = false, rounds = round, code = code, stopped = tostring(fixed)}
    end
    code = fenced(fixed)
  end
  return {passed = false, rounds = #rounds, code = code}
end

local mission = Workflow.new{name = "web_app_creator", max_concurrency = 2, budget = {tokens = 500000},
  inputs = {idea = APP_IDEA or "A to-do list HTTP API: list, add, complete and delete items, JSON in and out."},
  steps = {
  {id = "requirements", fn = function(p) return run_group("requirements", p.idea) end, params = {idea = "{{input.idea}}"}},
  {id = "architecture", depends_on = {"requirements"},
   fn = function(p, ctx) return run_group("architecture", ctx.steps.requirements.output) end},
  {id = "implementation", depends_on = {"architecture"},
   fn = function(p, ctx) return run_group("implementation", ctx.steps.architecture.output) end},
  {id = "tests", depends_on = {"architecture"},
   fn = function(p, ctx) return run_group("tests", ctx.steps.architecture.output) end},
  {id = "build_and_test", depends_on = {"implementation", "tests"}, fn = build_and_test},
  {id = "docs", depends_on = {"build_and_test"},
   fn = function(p, ctx) return run_group("docs", ctx.steps.architecture.output .. "\n\n```python\n" .. ctx.steps.build_and_test.output.code .. "```") end},
  {id = "review", depends_on = {"build_and_test"},
   fn = function(p, ctx) return run_group("review", "```python\n" .. ctx.steps.build_and_test.output.code .. "```") end},
}}

-- %% Run the mission and write the report
local record = mission:run()
for id, file in pairs{requirements = "REQUIREMENTS.md", architecture = "ARCHITECTURE.md", docs = "README.md", review = "REVIEW.md"} do
  local step = record.steps[id]
  if step.status == "succeeded" then Tool.call("write_file", {path = out .. "/" .. file, content = step.output, create_dirs = true}) end
end
local result = record.steps.build_and_test.output or {}
local usage = Agent.total_usage()
local report = {status = record.status, tests_passed = result.passed == true, tests_not_run = result.not_run, rounds = rounds, agents = agents,
                groups = #groups, run_id = record.run_id, trace_id = trace_id, output = out,
                tokens = usage.session.total_tokens, steps = {}}
for id, step in pairs(record.steps) do report.steps[id] = step.status end
Tool.call("write_file", {path = "out/report.json", create_dirs = true, content = Tool.call("to_json", {data = report})})
Tool.call("write_file", {path = "out/report.md", content = string.format(
  "# Web app creator report\n\n- mission run %s: %s\n- %d agents in %d groups\n- the application's tests: %s after %d round(s)\n- tokens: %d\n- trace: %s\n",
  record.run_id, record.status, agents, #groups, report.tests_passed and "passed" or "FAILED", #rounds,
  report.tokens, tostring(trace_id))})
print(string.format("mission %s; tests %s after %d round(s); trace %s", record.status,
                    report.tests_passed and "passed" or "failed", #rounds, tostring(trace_id)))
if result.not_run then
  print("the generated tests did not run: " .. result.not_run .. " (this directory's aikit.toml allows python3)")
elseif not report.tests_passed then
  error("the generated application's tests did not pass", 0)
end
