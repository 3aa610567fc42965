-- Content creator: four agents in a workflow (planner -> writer -> editor -> formatter) turn a
-- topic into a Markdown article. Each stage's text is stored as a new version of one artifact
-- (content/<slug>.md), so the draft, the edit and the final page are all kept and comparable.
--   aikit run main.lua ["topic"]

-- %% The agents
local topic = arg and arg[1] or "Why small teams should write design docs"
local slug = topic:lower():gsub("[^%w]+", "-"):gsub("^-+", ""):gsub("-+$", "")
local artifact = "content/" .. slug .. ".md"

local function agent(name, system)
  return Agent.new{name = name, model = APP_MODEL, max_steps = 1, budget = {tokens = 20000}, system = system}
end
local planner = agent("planner", "You are the planner. Outline an article on the topic: a title line "
  .. "starting with '# ', then three to five section headings starting with '## ', each with one line saying what it covers.")
local writer = agent("writer", "You are the writer. Write the article from the outline, in plain prose under "
  .. "each heading of the outline. Keep the headings.")
local editor = agent("editor", "You are the editor. Tighten the draft: shorter sentences, no repetition, "
  .. "the same headings. Return the whole edited article.")
local formatter = agent("formatter", "You are the formatter. Return the article as clean Markdown: the title, "
  .. "a one-paragraph summary in italics, a table of contents of the sections, then the sections.")

-- %% The workflow: each agent's text becomes the next version of the artifact
local function save(stage, from)
  return function(params, ctx)
    local text = ctx.steps[from].output.text
    local info = Artifact.put(artifact, text, {mime = "text/markdown",
                                               metadata = {stage = stage, agent = from, topic = topic}})
    return {version = info.version, sha256 = info.sha256, size = info.size}
  end
end
local pipeline = Workflow.new{name = "content_creator", mode = "sequential", retries = 1,
  budget = {tokens = 80000}, inputs = {topic = topic}, steps = {
  {id = "planner", agent = planner, input = "Topic: {{input.topic}}"},
  {id = "writer", agent = writer, input = "Topic: {{input.topic}}\n\nOutline:\n{{steps.planner.output.text}}"},
  {id = "save_draft", fn = save("draft", "writer")},
  {id = "editor", agent = editor, input = "{{steps.writer.output.text}}"},
  {id = "save_edit", fn = save("edited", "editor")},
  {id = "formatter", agent = formatter, input = "{{steps.editor.output.text}}"},
  {id = "save_final", fn = save("final", "formatter")},
}}

-- %% Run it and show the versions
local record = pipeline:run()
if record.status ~= "succeeded" then error("the content workflow " .. record.status, 0) end
local final = Artifact.get(artifact)
Tool.call("write_file", {path = "out/" .. slug .. ".md", content = final.content, create_dirs = true})
local versions = {}
for _, v in ipairs(Artifact.versions(artifact)) do
  versions[#versions + 1] = {version = v.version, stage = v.metadata.stage, agent = v.metadata.agent,
                             size = v.size, sha256 = v.sha256}
  print(string.format("v%d  %-7s by %-9s %5d bytes", v.version, v.metadata.stage, v.metadata.agent, v.size))
end
Tool.call("write_file", {path = "out/report.json", content = Tool.call("to_json", {data = {
  topic = topic, artifact = artifact, run_id = record.run_id, status = record.status,
  versions = versions, trace_id = record.steps.planner.output.trace_id, tokens = Agent.total_usage().session.total_tokens}})})
display.markdown(final.content)
print("trace " .. tostring(record.steps.planner.output.trace_id))
