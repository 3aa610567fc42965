-- Code review assistant: three reviewer agents read a real diff in parallel (security,
-- correctness, style), a fixer agent writes a patch that addresses their findings, the app checks
-- it with `git apply --check` (sending git's complaint back to the fixer, up to three tries),
-- applies and commits it, and writes a report.
--   aikit run main.lua
-- The repository is created by the app: work/repo, a commit of inputs/base/, then the change of
-- inputs/change/ left uncommitted (the diff under review).

-- %% A real repository with a change to review
local repo = "work/repo"
pcall(Tool.call, "delete_file", {path = "work", recursive = true})
Tool.call("make_directory", {path = "work"})
Tool.call("copy_file", {source = "inputs/base", destination = repo})
local function git(...)
  local r = Tool.call("run_process", {command = {"git", ...}, cwd = repo})
  if r.exit_code ~= 0 then error("git " .. table.concat({...}, " ") .. ": " .. r.stderr, 0) end
  return r
end
git("init", "--quiet", "--initial-branch=main")
Tool.call("git_add", {repo = repo, paths = {"todo.py"}})
Tool.call("git_commit", {repo = repo, message = "A to-do list", author_name = "Ada", author_email = "ada@example.org"})
Tool.call("copy_file", {source = "inputs/change/todo.py", destination = repo .. "/todo.py", overwrite = true})
local diff = Tool.call("git_diff", {repo = repo}).diff
local source = Tool.call("read_file", {path = repo .. "/todo.py"}).content
print(string.format("reviewing a diff of %d lines", select(2, diff:gsub("\n", ""))))

-- %% The agents
local function reviewer(name, focus)
  return Agent.new{name = name, model = APP_MODEL, max_steps = 1, budget = {tokens = 20000},
    system = "You are the " .. focus .. " reviewer of a code change. List each problem you find in the diff "
          .. "as one line '- file:line: problem; fix', most serious first. Say 'no findings' when there is none."}
end
local reviewers = {security = reviewer("security_reviewer", "security"),
                   correctness = reviewer("correctness_reviewer", "correctness"),
                   style = reviewer("style_reviewer", "style")}
local fixer = Agent.new{name = "fixer", model = APP_MODEL, max_steps = 1, budget = {tokens = 40000},
  system = "You are the fixer. Given a file, the diff that produced it and reviewers' findings, answer with "
        .. "one unified diff (```diff fenced, paths a/FILE and b/FILE) against the file as shown, fixing the findings."}

-- %% The fix loop: a patch that git cannot apply goes back to the fixer with git's message
local function fenced(text)
  local patch = text:match("```diff\n(.-)```") or text
  return patch:sub(-1) == "\n" and patch or patch .. "\n"
end
local function fix_until_it_applies(params, ctx)
  local findings = {}
  for _, id in ipairs{"security", "correctness", "style"} do
    findings[#findings + 1] = "## " .. id .. "\n" .. ctx.steps[id].output.text
  end
  local request = "File todo.py:\n```python\n" .. source .. "```\n\nDiff under review:\n```diff\n" .. diff
               .. "```\n\nFindings:\n" .. table.concat(findings, "\n\n")
  local tries = {}
  for attempt = 1, 3 do
    local patch = fenced(fixer:run(request).text)
    Tool.call("write_file", {path = "work/fix.patch", content = patch})
    local check = Tool.call("run_process", {command = {"git", "apply", "--check", "../fix.patch"}, cwd = repo})
    tries[#tries + 1] = {attempt = attempt, exit_code = check.exit_code, stderr = check.stderr}
    if check.exit_code == 0 then return {patch = patch, tries = tries} end
    request = "git apply --check rejected your patch:\n" .. check.stderr .. "\nSend a corrected unified diff against:\n```python\n"
           .. source .. "```"
  end
  error("the fixer's patch never applied: " .. tries[#tries].stderr, 0)
end

local review = Workflow.new{name = "code_review", max_concurrency = 3, inputs = {diff = diff}, steps = {
  {id = "security", agent = reviewers.security, input = "{{input.diff}}"},
  {id = "correctness", agent = reviewers.correctness, input = "{{input.diff}}"},
  {id = "style", agent = reviewers.style, input = "{{input.diff}}"},
  {id = "fix", depends_on = {"security", "correctness", "style"}, fn = fix_until_it_applies},
}}

-- %% Review, fix, apply, report
local record = review:run()
if record.status ~= "succeeded" then error("the review " .. record.status, 0) end
local fix = record.steps.fix.output
git("apply", "../fix.patch")
Tool.call("git_add", {repo = repo, paths = {"todo.py"}})
local commit = Tool.call("git_commit", {repo = repo, message = "Apply the review's fixes",
                                        author_name = "aikit reviewer", author_email = "review@example.org"})
local lines = {"# Code review of todo.py", ""}
for _, id in ipairs{"security", "correctness", "style"} do
  lines[#lines + 1] = "## " .. id
  lines[#lines + 1] = record.steps[id].output.text
  lines[#lines + 1] = ""
end
lines[#lines + 1] = string.format("## Fix (applied as %s after %d attempt(s); `git apply --check` exit 0)", commit.short_hash, #fix.tries)
lines[#lines + 1] = "```diff\n" .. fix.patch .. "```"
lines[#lines + 1] = ""
lines[#lines + 1] = "Trace: " .. tostring(record.steps.security.output.trace_id)
Tool.call("write_file", {path = "out/review.md", create_dirs = true, content = table.concat(lines, "\n") .. "\n"})
Tool.call("write_file", {path = "out/review.json", content = Tool.call("to_json", {data = {
  run_id = record.run_id, layers = review:layers(), tries = fix.tries, commit = commit.hash,
  trace_id = record.steps.security.output.trace_id}})})
print(table.concat(lines, "\n"))
