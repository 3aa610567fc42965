-- APP_MODEL, a TEST MODEL: each agent transforms what it is given as a capable model would, in a
-- fixed, recognisable way (so the notebook runs offline and shows four distinct versions).
APP_MODEL = function(messages, tools)
  local system, input = messages[1].text, messages[#messages].text
  if system:find("You are the planner") then
    return "# Design docs for small teams\n\n## Why write\nThinking on paper.\n\n## What to write\nGoals and trade-offs.\n\n## How long\nTwo pages."
  elseif system:find("You are the writer") then
    return (input:match("Outline:\n(.*)"):gsub("\n([^#\n][^\n]*)", "\nIn short: %1 A design doc makes this explicit before code is written."))
  elseif system:find("You are the editor") then
    return (input:gsub(" A design doc makes this explicit before code is written%.", " Write it down first."))
  end
  local sections = {}
  for heading in input:gmatch("\n## ([^\n]+)") do sections[#sections + 1] = "- " .. heading end
  return (input:gsub("^(# [^\n]+\n)", "%1\n*Why, what and how long: design docs for small teams.*\n\n"
                                        .. table.concat(sections, "\n"):gsub("%%", "%%%%") .. "\n"))
end
