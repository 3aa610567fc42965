-- A tool-using agent, offline, on a TEST model (its answers are scripted, no language model is
-- involved): the agent loop, tool calls and results fed back are real.
--   aikit run examples/agent_with_tools.lua
-- For real tool use, set a model that calls tools: [models] default = "openai/gpt-4o-mini" in aikit.toml.
local agent = Agent.new{name = "checker", tools = {"calculate", "hash"}, model = Agent.scripted{
  {tool_calls = {{name = "calculate", arguments = {expression = "2 ** 10"}},
                 {name = "hash", arguments = {text = "aikit", algorithm = "sha256"}}}},
  "2^10 is 1024; the sha256 of 'aikit' starts with the digits the hash tool returned.",
}}
local r = agent:run("What is 2^10, and what is the sha256 of 'aikit'?")
print("[test model] " .. r.text)
for _, call in ipairs(r.tool_calls) do
  print(string.format("  tool %-9s -> %s", call.name, tostring(call.result):sub(1, 16)))
end
print(string.format("%d model calls, stop reason %s", r.steps, r.stop_reason))
