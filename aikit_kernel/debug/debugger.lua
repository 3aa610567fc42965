-- aikit debugger, Lua side: the hook handlers and the primitives the Python debugger calls while
-- paused (frames, scopes, variables, evaluate, set variable). Loaded once per runtime with the
-- full standard library, like the sandbox bootstrap; user code never sees this chunk.
--
-- Frames are addressed as (thread, marker, offset): `marker` is the function whose frame sits just
-- above the frames shown (the hook function for a breakpoint, step or pause; the exception handler
-- for an error; coroutine.resume for a resumer thread). The marker's level is found again for
-- every request, because Python's calls into Lua grow the running thread's stack while paused.
local internal, host = ...

local getinfo, getlocal, setlocal = debug.getinfo, debug.getlocal, debug.setlocal
local getupvalue, setupvalue = debug.getupvalue, debug.setupvalue
local co_running, co_status = coroutine.running, coroutine.status
local raw_load, raw_pcall, raw_type, raw_tostring = load, pcall, type, tostring
local raw_getmetatable, raw_setmetatable, raw_rawget, raw_next = getmetatable, setmetatable, rawget, next
local s_sub, s_format, s_match, s_find, s_byte = string.sub, string.format, string.match, string.find, string.byte
local t_sort, t_pack, t_unpack, m_type = table.sort, table.pack, table.unpack, math.type

local handlers = internal.debug_handlers
local hook_fn, co_chain, co_resume = internal.hook_function, internal.co_chain, internal.co_resume
local main_thread, env, repr, INTERRUPT = internal.main_thread, internal.env, internal.repr, internal.INTERRUPT
local host_line, host_count, host_exception = host.line, host.count, host.exception
local host_step_return = host.step_return

local dbg = {}
local candidate = nil -- where the hook or handler now calling Python would stop
local paused = nil    -- while stopped: { thread = <coroutine>, marker = <function> }
local step = nil      -- a pending step: { mode = "in"|"over"|"out", thread = ..., depth = n }
local frames, refs, next_ref = {}, {}, 0

---------------------------------------------------------------------------------------------
-- Stack addressing
---------------------------------------------------------------------------------------------
-- The level of `marker`'s frame in `thread`, as seen from the function calling marker_level
-- (levels of the running thread count from the caller of getinfo).
local function marker_level(thread, marker)
  local running = thread == co_running()
  for level = 0, 100000 do
    local info = getinfo(thread, level, "f")
    if info == nil then return nil end
    if info.func == marker then return running and level - 1 or level end
  end
end

-- Frames at and below the one just above `marker` (the stack depth the C filter measures).
local function user_depth(thread, marker)
  local m, total = nil, 0
  while true do
    local info = getinfo(thread, total, "f")
    if info == nil then break end
    if m == nil and info.func == marker then m = total end
    total = total + 1
  end
  return m and total - m - 1 or total
end

-- (thread, level) of a frame, the level as seen from the function calling locate.
local function locate(frame)
  local base = marker_level(frame.thread, frame.marker)
  if base == nil then return nil end
  if frame.thread == co_running() then base = base - 1 end
  return frame.thread, base + frame.offset
end

local function shown(info)
  return info.what ~= "C" and not s_find(info.source, "^=%[aikit")
end

local function frame_name(info)
  if info.what == "main" then return "main chunk" end
  if info.name then return info.name end
  return s_format("function <%s:%d>", info.short_src, info.linedefined)
end

-- The threads whose frames make up the stack: the paused one, then each resumer outwards.
local function thread_chain()
  local chain = { { thread = paused.thread, marker = paused.marker, skip = paused.skip } }
  local found = false
  for i = #co_chain, 1, -1 do
    local co = co_chain[i]
    if found then chain[#chain + 1] = { thread = co, marker = co_resume } end
    if co == paused.thread then found = true end
  end
  if paused.thread ~= main_thread then chain[#chain + 1] = { thread = main_thread, marker = co_resume } end
  return chain
end

-- stackTrace: { {id, name, source, line}, ... } (all frames; Python pages them).
function dbg.frames()
  frames = {}
  local out = {}
  for _, t in ipairs(thread_chain()) do
    local base = marker_level(t.thread, t.marker)
    if base ~= nil then
      local offset = 1 + (t.skip or 0)
      while true do
        local info = getinfo(t.thread, base + offset, "Snlf")
        if info == nil then break end
        if shown(info) then
          local id = #frames + 1
          frames[id] = { thread = t.thread, marker = t.marker, offset = offset }
          out[#out + 1] = { id = id, name = frame_name(info), source = info.source, line = info.currentline,
                            linedefined = info.linedefined,
                            cell = internal.cell_functions[info.func] or nil }
        end
        offset = offset + 1
      end
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Variables
---------------------------------------------------------------------------------------------
local function new_ref(descriptor)
  next_ref = next_ref + 1
  refs[next_ref] = descriptor
  return next_ref
end

local function type_name(v)
  local mt = raw_getmetatable(v)
  local name = raw_type(mt) == "table" and raw_rawget(mt, "__name")
  if raw_type(name) == "string" then return name end
  if m_type(v) then return m_type(v) end
  return raw_type(v)
end

local function short(v, limits)
  local ok, s = raw_pcall(repr, v, limits or { max_depth = 2, max_items = 8, max_chars = 300, width = 100000 })
  if ok then return s end
  if s == INTERRUPT then error(INTERRUPT, 0) end
  return "<" .. raw_type(v) .. ": cannot be shown>"
end

local function count_entries(t)
  local n = rawlen(t)
  local named = 0
  for k in raw_next, t do
    if not (m_type(k) == "integer" and k >= 1 and k <= n) then named = named + 1 end
  end
  return n, named
end

local function key_label(k)
  if raw_type(k) == "string" and s_find(k, "^[%a_][%w_]*$") then return k end
  return "[" .. short(k) .. "]"
end

local function variable(name, value, evaluate_name)
  local v = { name = name, value = short(value), type = type_name(value), ref = 0, evaluate_name = evaluate_name }
  if raw_type(value) == "table" then
    v.indexed, v.named = count_entries(value)
    if v.indexed + v.named > 0 then v.ref = new_ref({ kind = "table", value = value, path = evaluate_name }) end
  end
  return v
end

local function frame_locals(frame)
  local thread, level = locate(frame)
  local names, values, order = {}, {}, {}
  if thread == nil then return order, values, names end
  for i = 1, 10000 do
    local name, value = getlocal(thread, level, i)
    if name == nil then break end
    if s_sub(name, 1, 1) ~= "(" then
      if names[name] == nil then order[#order + 1] = name end
      names[name], values[name] = i, value
    end
  end
  return order, values, names
end

local function frame_upvalues(frame)
  local thread, level = locate(frame)
  local order, values, index = {}, {}, {}
  if thread == nil then return order, values, index, nil end
  local func = getinfo(thread, level, "f").func
  for i = 1, 255 do
    local name, value = getupvalue(func, i)
    if name == nil then break end
    if name ~= "_ENV" and name ~= "" and not s_find(name, "^__aikit") then
      order[#order + 1] = name
      values[name], index[name] = value, i
    end
  end
  return order, values, index, func
end

local BUILTIN = {}
for k in raw_next, env do BUILTIN[k] = true end
internal.debug_builtins = BUILTIN

local function user_globals()
  local names = {}
  for k in raw_next, env do
    if raw_type(k) == "string" and not BUILTIN[k] then names[#names + 1] = k end
  end
  t_sort(names)
  return names
end

function dbg.globals_ref()
  if paused == nil then refs = {} end
  return new_ref({ kind = "globals" })
end

-- scopes(frame id) -> { {name, ref, named, expensive} }
function dbg.scopes(id)
  if paused and next(frames) == nil then dbg.frames() end  -- no stackTrace asked yet
  local frame = frames[id]
  if frame == nil then return {} end
  local locals = frame_locals(frame)
  local ups = frame_upvalues(frame)
  return {
    { name = "Locals", ref = new_ref({ kind = "locals", frame = frame }), named = #locals },
    { name = "Upvalues", ref = new_ref({ kind = "upvalues", frame = frame }), named = #ups },
    { name = "Globals", ref = new_ref({ kind = "globals" }), named = #user_globals(), expensive = true },
  }
end

local function page(list, start, count)
  if start <= 0 and (count <= 0 or count >= #list) then return list end
  local out = {}
  local last = count > 0 and math.min(#list, start + count) or #list
  for i = start + 1, last do out[#out + 1] = list[i] end
  return out
end

-- variables(ref, filter, start, count) -> { {name, value, type, ref, indexed, named, evaluate_name} }
function dbg.variables(ref, filter, start, count)
  local d = refs[ref]
  if d == nil then return nil end
  local out = {}
  if d.kind == "locals" then
    local order, values = frame_locals(d.frame)
    for _, name in ipairs(order) do out[#out + 1] = variable(name, values[name], name) end
  elseif d.kind == "upvalues" then
    local order, values = frame_upvalues(d.frame)
    for _, name in ipairs(order) do out[#out + 1] = variable(name, values[name], name) end
  elseif d.kind == "globals" then
    for _, name in ipairs(user_globals()) do out[#out + 1] = variable(name, env[name], name) end
  elseif d.kind == "table" then
    local t, path = d.value, d.path
    local n = rawlen(t)
    if filter ~= "named" then
      local from, to = 1, n
      if filter == "indexed" then from, to = start + 1, count > 0 and math.min(n, start + count) or n end
      for i = from, to do
        out[#out + 1] = variable("[" .. i .. "]", raw_rawget(t, i), path and (path .. "[" .. i .. "]"))
      end
    end
    if filter ~= "indexed" then
      local keys = {}
      for k in raw_next, t do
        if not (m_type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
      end
      if #keys <= 5000 then
        t_sort(keys, function(a, b)
          local ta, tb = raw_type(a), raw_type(b)
          if ta ~= tb then return ta < tb end
          if ta == "string" or ta == "number" then return a < b end
          return raw_tostring(a) < raw_tostring(b)
        end)
      end
      for _, k in ipairs(keys) do
        local label = key_label(k)
        local sub = path and (raw_type(k) == "string" and s_find(k, "^[%a_][%w_]*$") and (path .. "." .. k)
          or (path .. label)) or nil
        out[#out + 1] = variable(label, raw_rawget(t, k), sub)
      end
      -- the metatable, as debuggers of other languages show __proto__ or class
      local mt = raw_getmetatable(t)
      if raw_type(mt) == "table" then out[#out + 1] = variable("(metatable)", mt, nil) end
    end
    if filter == "indexed" then return out end
  end
  return page(out, start or 0, count or 0)
end

---------------------------------------------------------------------------------------------
-- Evaluate and set in a frame: names resolve to the frame's locals, then its upvalues, then the
-- globals; assignments write back to the same place.
---------------------------------------------------------------------------------------------
local function frame_scope(frame)
  if frame == nil then return env end
  local _, local_values, local_index = frame_locals(frame)
  local _, up_values, up_index, func = frame_upvalues(frame)
  return raw_setmetatable({}, {
    __index = function(_, k)
      if local_index[k] then return local_values[k] end
      if up_index[k] then return up_values[k] end
      return env[k]
    end,
    __newindex = function(_, k, v)
      if local_index[k] then
        local thread, level = locate(frame)
        setlocal(thread, level, local_index[k], v)
        local_values[k] = v
      elseif up_index[k] then
        setupvalue(func, up_index[k], v)
        up_values[k] = v
      else
        env[k] = v
      end
    end,
  })
end

local function compile(code, scope)
  local fn = raw_load("return " .. code, "=(debug)", "t", scope)
  if fn then return fn end
  local err
  fn, err = raw_load(code, "=(debug)", "t", scope)
  return fn, err
end

local function evaluate_in(frame, expression)
  local scope = frame_scope(frame)
  local fn, err = compile(expression, scope)
  if fn == nil then return false, err end
  local result = t_pack(raw_pcall(fn))
  if not result[1] then
    if result[2] == INTERRUPT then error(INTERRUPT, 0) end
    local e = result[2]
    if raw_type(e) == "table" and e.message then e = raw_tostring(e.code) .. ": " .. raw_tostring(e.message) end
    return false, raw_tostring(e)
  end
  return true, t_pack(t_unpack(result, 2, result.n))
end

-- evaluate(frame id or nil, expression) -> ok, values table (packed) | error message
function dbg.evaluate(id, expression)
  if id ~= nil and paused and next(frames) == nil then dbg.frames() end  -- no stackTrace asked yet
  if id ~= nil and frames[id] == nil then return false, "unknown frame " .. raw_tostring(id) end
  local ok, values = evaluate_in(id and frames[id] or nil, expression)
  return ok, values
end

-- The result of evaluate as a variable (for the DAP evaluate reply).
function dbg.describe(values, expression)
  if values.n == 0 then return { name = "result", value = "", type = "", ref = 0 } end
  if values.n == 1 then return variable("result", values[1], expression) end
  local parts = {}
  for i = 1, values.n do parts[i] = short(values[i]) end
  return { name = "result", value = table.concat(parts, ", "), type = "values", ref = 0 }
end

-- copy_to_global(frame id, expression, name): the value of expression in the frame, as a global
function dbg.copy_to_global(id, expression, name)
  local ok, values = dbg.evaluate(id, expression)
  if not ok then return false, values end
  env[name] = values[1]
  return true
end

-- set_variable(ref, name, value expression) -> ok, variable | message
function dbg.set_variable(ref, name, expression)
  local d = refs[ref]
  if d == nil then return false, "unknown variables reference" end
  local ok, values = evaluate_in(d.frame, expression)
  if not ok then return false, values end
  local value = values[1]
  if d.kind == "locals" then
    local _, _, index = frame_locals(d.frame)
    if index[name] == nil then return false, "no local named " .. name end
    local thread, level = locate(d.frame)
    setlocal(thread, level, index[name], value)
  elseif d.kind == "upvalues" then
    local _, _, index, func = frame_upvalues(d.frame)
    if index[name] == nil then return false, "no upvalue named " .. name end
    setupvalue(func, index[name], value)
  elseif d.kind == "globals" then
    env[name] = value
  elseif d.kind == "table" then
    local key = name
    local inner = s_match(name, "^%[(.*)%]$")
    if inner then
      local kfn = raw_load("return " .. inner, "=(key)", "t", {})
      if kfn == nil then return false, "cannot read the key " .. name end
      key = kfn()
    end
    d.value[key] = value
  else
    return false, "this scope cannot be changed"
  end
  return true, variable(name, value, nil)
end

---------------------------------------------------------------------------------------------
-- Stopping and stepping
---------------------------------------------------------------------------------------------
-- Python calls this (from host.line/count/exception) once it decided to stop there.
function dbg.enter()
  paused = candidate
end

function dbg.leave()
  paused, frames, refs = nil, {}, {}
end

function dbg.is_paused()
  return paused ~= nil
end

-- Arm a step from the paused position (the top frame); returns the depth the C filter compares
-- against and the thread's state address.
function dbg.set_step(mode)
  if mode == nil then step = nil return 0 end
  local thread = paused.thread
  step = { mode = mode, thread = thread, depth = user_depth(thread, paused.marker) - (paused.skip or 0) }
  return step.depth, s_match(raw_tostring(thread), "0x%x+")
end

-- Stop at the next line that runs anywhere (launch with stopOnEntry).
function dbg.step_anywhere()
  step = { mode = "in" }
end

function dbg.clear_step()
  step = nil
end

-- host.* return "interrupted" when the kernel was interrupted while stopped.
local function resumed(result)
  if result == "interrupted" then error(INTERRUPT, 0) end
  return result
end

local function step_done()
  if step == nil then return false end
  if step.mode == "in" then return true end
  local co = co_running()
  if co == step.thread then
    local depth = user_depth(co, hook_fn)
    if step.mode == "over" then return depth <= step.depth end
    return depth < step.depth
  end
  local status = co_status(step.thread)
  return status == "dead" or status == "suspended"  -- the stepped thread left: stop where control went
end

handlers.line = function(line)
  if paused then return end  -- the debugger's own evaluations run with hooks on other threads
  local source = getinfo(3, "S").source  -- 1: this handler, 2: the hook function, 3: the code on this line
  -- Only files ("@path") can hold breakpoints or be stepped through; other chunks are aikit's
  -- own (the debugger's calls on this thread among them) or evaluated expressions.
  if s_byte(source, 1) ~= 64 then return end
  candidate = { thread = co_running(), marker = hook_fn }
  resumed(host_line(source, line, step_done()))
end

-- A return event (only while stepping over/out): the stepped function is returning, so the step
-- ends in its caller, shown as the top frame (the returning frame is skipped).
handlers.ret = function()
  if paused or step == nil or step.mode == "in" then return end
  local co = co_running()
  if co ~= step.thread or step.depth <= 1 or user_depth(co, hook_fn) ~= step.depth then return end
  candidate = { thread = co, marker = hook_fn, skip = 1 }
  resumed(host_step_return())
end

handlers.count = function()
  if paused then return true end
  candidate = { thread = co_running(), marker = hook_fn }
  return resumed(host_count())
end

local function message_of(e)
  if raw_type(e) == "table" and raw_type(e.message) == "string" then
    return raw_tostring(e.code) .. ": " .. e.message
  end
  local ok, s = raw_pcall(raw_tostring, e)
  return ok and s or raw_type(e)
end

local on_uncaught, on_raised
function on_uncaught(e)
  if paused or e == INTERRUPT then return end
  candidate = { thread = co_running(), marker = on_uncaught }
  resumed(host_exception("uncaught", message_of(e)))
end

function on_raised(e)
  if paused or e == INTERRUPT then return end
  candidate = { thread = co_running(), marker = on_raised }
  resumed(host_exception("raised", message_of(e)))
end

function dbg.set_exception_filters(uncaught, raised)
  -- "raised" means every error where it is raised, so uncaught ones too
  handlers.uncaught = (uncaught or raised) and on_uncaught or nil
  handlers.raised = raised and on_raised or nil
end

return dbg
