-- APP_MODEL is not used here: the mission's llm steps use the default model. This notebook runs
-- offline by hooking the model calls: a llm.before hook answers them (a TEST MODEL standing in
-- for a capable one) before any model is asked.
Hook.register("llm.before", function(ctx)
  local prompt = ctx.payload.messages[#ctx.payload.messages].text
  if prompt:find("declined") then
    return Hook.replace("We are sorry: your card was declined, so order 1042 is on hold. Reply to this mail to pay another way.")
  end
  return Hook.replace("LOW: a known customer ordering a usual quantity.")
end, {name = "test_model"})
-- Nobody can answer an approval question while nbclient runs this notebook: approve by policy.
APP_APPROVE = "auto"
