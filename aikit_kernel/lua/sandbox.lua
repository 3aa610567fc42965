-- aikit sandbox bootstrap. Runs once per runtime with the full standard library, captures what
-- it needs as upvalues, and returns the internals the Python engine drives. User code never sees
-- this chunk's environment: it is loaded as text into `env`, built below.
local host = ...

local debug_traceback, debug_sethook, debug_getregistry = debug.traceback, debug.sethook, debug.getregistry
local raw_load, raw_pcall, raw_xpcall, raw_error = load, pcall, xpcall, error
local raw_tostring, raw_type, raw_select, raw_next = tostring, type, select, next
local raw_getmetatable, raw_setmetatable, raw_rawget, raw_rawequal = getmetatable, setmetatable, rawget, rawequal
local raw_pairs, raw_ipairs, raw_tonumber, raw_rawlen = pairs, ipairs, tonumber, rawlen
local co_create, co_resume, co_status, co_running, co_close =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.running, coroutine.close
local s_format, s_rep, s_gsub, s_match, s_sub, s_byte, s_find =
  string.format, string.rep, string.gsub, string.match, string.sub, string.byte, string.find
local t_concat, t_sort, t_pack, t_unpack, t_insert = table.concat, table.sort, table.pack, table.unpack, table.insert
local math_type, math_huge = math.type, math.huge

local internal = {}

---------------------------------------------------------------------------------------------
-- Errors: the interrupt sentinel, structured errors from Python ({code, message, details})
---------------------------------------------------------------------------------------------
local INTERRUPT = raw_setmetatable({}, { __tostring = function() return "interrupted" end, __name = "aikit.Interrupt" })
internal.INTERRUPT = INTERRUPT
-- Raised inside one workflow step's coroutine when its timeout expires (or its run is cancelled):
-- like INTERRUPT, pcall cannot swallow it, but it stops only that step (see step_resume).
local CANCEL = raw_setmetatable({}, { __tostring = function() return "step cancelled" end, __name = "aikit.StepCancel" })
internal.CANCEL = CANCEL

-- Interrupter.stop_kind / rearm results (aikit_kernel/lua/interrupt.py)
local STOP_INTERRUPT, STOP_CANCEL = 1, 2
local host_stop_kind = host.stop_kind

local function is_stop(e)
  return raw_rawequal(e, INTERRUPT) or raw_rawequal(e, CANCEL)
end

local error_mt = {
  __name = "aikit.Error",
  __tostring = function(e) return raw_tostring(e.code) .. ": " .. raw_tostring(e.message) end,
}
internal.error_mt = error_mt

local function new_error(code, message, details)
  return raw_setmetatable({ code = code, message = message, details = details }, error_mt)
end
internal.new_error = new_error

-- Python host functions return `true, ...` on success or `false, code, message[, details]`.
local function check(ok, ...)
  if ok then return ... end
  local code, message, details = ...
  if code == "interrupted" then raw_error(host_stop_kind() == STOP_CANCEL and CANCEL or INTERRUPT, 0) end
  raw_error(new_error(code, message, details), 3)
end

local function bind(pyfn)
  return function(...) return check(pyfn(...)) end
end
internal.bind = bind
internal.check = check  -- for bindings that call a host function directly (Tool.call)

---------------------------------------------------------------------------------------------
-- Interrupts: a count hook, registered here but disarmed from Python until an interrupt is
-- requested; running coroutines are reported to Python so they can be armed too.
---------------------------------------------------------------------------------------------
local host_rearm, host_co_enter, host_co_leave = host.rearm, host.co_enter, host.co_leave

-- The one Lua hook function. Count events fire once an interrupt (or a debugger pause) is
-- requested; for an interrupt it re-arms itself with a long count rather than disarming, so code
-- that swallows the error (a __gc finalizer, say) is interrupted again. Line events come only
-- while the debugger has breakpoints or a step pending (debug/debugger.lua sets the handlers).
local debug_handlers = {}
internal.debug_handlers = debug_handlers

local function interrupt_hook(event, line)
  if event == "line" then
    local on_line = debug_handlers.line
    if on_line then on_line(line) end
    return
  end
  if event == "return" then
    local on_return = debug_handlers.ret
    if on_return then on_return() end
    return
  end
  local on_count = debug_handlers.count
  if on_count and on_count() then return end
  local kind = host_rearm()
  if kind == STOP_INTERRUPT then raw_error(INTERRUPT, 0) end
  if kind == STOP_CANCEL then raw_error(CANCEL, 0) end
end
internal.hook_function = interrupt_hook
debug_sethook(interrupt_hook, "", 1 << 30)
local hooktable = debug_getregistry()._HOOKKEY
internal.main_thread = co_running()
internal.main_thread_address = s_match(raw_tostring(co_running()), "0x%x+")
-- Coroutines being resumed, outermost first (the debugger shows their resumers' frames too).
local co_chain = {}
internal.co_chain = co_chain
internal.co_resume = co_resume

local coaddress = raw_setmetatable({}, { __mode = "k" })

local function rethrow_interrupt(ok, ...)
  if not ok and is_stop((...)) then raw_error((...), 0) end
  return ok, ...
end

local function safe_create(f)
  local co = co_create(f)
  hooktable[co] = interrupt_hook
  coaddress[co] = s_match(raw_tostring(co), "0x%x+")
  return co
end

local function leave_and_return(...)
  co_chain[#co_chain] = nil
  host_co_leave()
  return rethrow_interrupt(...)
end

local function safe_resume(co, ...)
  local address = raw_type(co) == "thread" and coaddress[co]
  if not address then return co_resume(co, ...) end
  host_co_enter(address)
  co_chain[#co_chain + 1] = co
  return leave_and_return(co_resume(co, ...))
end

-- Closing a coroutine runs its pending __close metamethods on its own thread: arm that thread
-- as a resume would, so an interrupt stops a __close that never returns.
local function safe_close(co)
  local address = raw_type(co) == "thread" and coaddress[co]
  if not address or co_status(co) == "running" or co_status(co) == "normal" then return co_close(co) end
  host_co_enter(address)
  co_chain[#co_chain + 1] = co
  return leave_and_return(co_close(co))
end

local function safe_wrap(f)
  local co = safe_create(f)
  return function(...)
    local result = t_pack(safe_resume(co, ...))
    if result[1] then return t_unpack(result, 2, result.n) end
    local err = result[2]
    if co_status(co) == "dead" then safe_close(co) end
    raw_error(err, 0)
  end
end

-- With the debugger's "raised" exception filter on, errors caught by pcall/xpcall stop the
-- debugger where they were raised (the stack is still intact inside a message handler).
local function on_raised(e)
  local raised = debug_handlers.raised
  if raised and not is_stop(e) then raised(e) end
  return e
end

-- A caught error message names a cell as its label ([3]:2), not as the file it was compiled from
-- (internal.prettify is set by the engine); stop sentinels are rethrown.
local function caught(ok, ...)
  if ok then return ok, ... end
  local e = ...
  if is_stop(e) then raw_error(e, 0) end
  local prettify = internal.prettify
  if raw_type(e) == "string" and prettify then return false, prettify(e) end
  return false, ...
end

local function safe_pcall(f, ...)
  if debug_handlers.raised then return caught(raw_xpcall(f, on_raised, ...)) end
  return caught(raw_pcall(f, ...))
end

local function safe_xpcall(f, handler, ...)
  local function guarded(e)
    if is_stop(e) then return e end
    if debug_handlers.raised then on_raised(e) end
    return handler(e)
  end
  return caught(raw_xpcall(f, guarded, ...))
end

---------------------------------------------------------------------------------------------
-- Pretty printing (execute_result, display): cycle-safe, depth/width/size limits.
---------------------------------------------------------------------------------------------
local IDENT = "^[%a_][%w_]*$"
local KEYWORDS = {}
for word in s_gsub("and break do else elseif end false for function goto if in local nil not or repeat return then true until while", "", ""):gmatch("%a+") do
  KEYWORDS[word] = true
end

local function quote(s)
  return '"' .. s_gsub(s, '[%c"\\]', function(c)
    if c == "\n" then return "\\n" elseif c == "\t" then return "\\t" elseif c == "\r" then return "\\r"
    elseif c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return s_format("\\%d", s_byte(c))
  end) .. '"'
end
internal.quote = quote

local function scalar_repr(v, top)
  local tv = raw_type(v)
  if tv == "string" then return quote(v) end
  if tv == "number" and math_type(v) == "float" then
    if v ~= v then return "nan" end
    if v == math_huge then return "math.huge" elseif v == -math_huge then return "-math.huge" end
    return s_format("%.14g", v):find("[%.eni]") and s_format("%.14g", v) or s_format("%.1f", v)
  end
  return raw_tostring(v)
end

local function key_order(a, b)
  local ta, tb = raw_type(a), raw_type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return raw_tostring(a) < raw_tostring(b)
end

local function repr(value, opts)
  opts = opts or {}
  local max_depth = opts.max_depth or 6
  local max_items = opts.max_items or 100
  local max_chars = opts.max_chars or 20000
  local width = opts.width or 80
  local seen = {}
  local budget = max_chars

  local function render(v, depth, indent)
    if raw_type(v) ~= "table" then return scalar_repr(v) end
    local mt = raw_getmetatable(v)
    if raw_type(mt) == "table" and raw_rawget(mt, "__tostring") and not raw_rawget(mt, "__show_fields") then
      local ok, s = raw_pcall(raw_tostring, v)
      if ok then return s end
      if is_stop(s) then raw_error(s, 0) end
    end
    if seen[v] then return "<cycle: " .. raw_tostring(v) .. ">" end
    if depth >= max_depth then return "{...}" end
    if budget <= 0 then return "{...}" end
    seen[v] = true
    local parts, n = {}, raw_rawlen(v)
    local count = 0
    for i = 1, n do
      count = count + 1
      if count > max_items then break end
      parts[#parts + 1] = render(raw_rawget(v, i), depth + 1, indent .. "  ")
      budget = budget - #parts[#parts]
    end
    local keys = {}
    for k in raw_next, v do
      if not (math_type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    local total = n + #keys
    if #keys <= 2000 then t_sort(keys, key_order) end
    for _, k in raw_ipairs(keys) do
      count = count + 1
      if count > max_items or budget <= 0 then break end
      local ks
      if raw_type(k) == "string" and s_find(k, IDENT) and not KEYWORDS[k] then ks = k
      else ks = "[" .. render(k, depth + 1, indent .. "  ") .. "]" end
      parts[#parts + 1] = ks .. " = " .. render(raw_rawget(v, k), depth + 1, indent .. "  ")
      budget = budget - #parts[#parts]
    end
    if total > #parts then parts[#parts + 1] = s_format("... (%d more)", total - #parts) end
    seen[v] = nil
    if #parts == 0 then return "{}" end
    local flat = "{" .. t_concat(parts, ", ") .. "}"
    if #flat + #indent <= width and not s_find(flat, "\n") then return flat end
    local inner = indent .. "  "
    if #keys == 0 then
      -- A long list of short items: fill lines up to the width instead of one item per line.
      local lines, line = {}, nil
      for _, part in raw_ipairs(parts) do
        if s_find(part, "\n") or #part > width // 2 or s_sub(part, 1, 1) == "{" then lines = nil; break end
        if line and #line + #part + 2 + #inner <= width then line = line .. ", " .. part
        else
          if line then lines[#lines + 1] = line end
          line = part
        end
      end
      if lines then
        lines[#lines + 1] = line
        return "{\n" .. inner .. t_concat(lines, ",\n" .. inner) .. "\n" .. indent .. "}"
      end
    end
    return "{\n" .. inner .. t_concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
  end

  return render(value, 0, "")
end
internal.repr = repr

function internal.render_all(values)
  local parts = {}
  for i = 1, values.n do parts[i] = repr(values[i]) end
  return t_concat(parts, "\t")
end

-- print/tostring-style rendering (Lua semantics, honours __tostring and __name)
internal.tostring = raw_tostring

---------------------------------------------------------------------------------------------
-- Output: print, io.write, io.stderr:write, io.read routed to Python
---------------------------------------------------------------------------------------------
local host_write = host.write

local function print_(...)
  local n = raw_select("#", ...)
  if n == 1 then
    host_write("stdout", raw_tostring((...)) .. "\n")
    return
  end
  local parts = {}
  for i = 1, n do parts[i] = raw_tostring((raw_select(i, ...))) end
  host_write("stdout", t_concat(parts, "\t") .. "\n")
end

local function writable(fname, i, v)
  local tv = raw_type(v)
  if tv == "string" then return v end
  if tv == "number" then
    if math_type(v) == "integer" then return s_format("%d", v) end
    return s_format("%.14g", v)
  end
  -- level 4: this function, written, the file's write method, and the caller of write
  raw_error(s_format("bad argument #%d to '%s' (string expected, got %s)", i, fname, tv), 4)
end

-- The arguments of a file's write as the one string it writes.
local function written(...)
  local n = raw_select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = writable("write", i, (raw_select(i, ...))) end
  return t_concat(parts)
end

local function stream_file(name)
  local file = {}
  local methods = {}
  function methods.write(self, ...)
    host_write(name, written(...))
    return self
  end
  function methods.flush(self) return self end
  function methods.setvbuf() return true end
  function methods.close() return nil, "cannot close standard file" end
  function methods.seek() return nil, "Illegal seek", 29 end
  return raw_setmetatable(file, {
    __index = methods, __name = "FILE*", __quiet = true,
    __tostring = function() return "file (" .. name .. ")" end,
  })
end
local stdout, stderr = stream_file("stdout"), stream_file("stderr")

local host_readline = bind(host.readline)
local host_sleep_start = bind(host.sleep_start)

---------------------------------------------------------------------------------------------
-- Awaiting work on the I/O loop. A Python binding starts the work and returns a future id.
-- Inside a scheduler coroutine (a workflow's Lua step) awaiting yields, so other Lua steps run
-- while this one waits; anywhere else it blocks (interruptibly) until the future is done.
---------------------------------------------------------------------------------------------
local co_yield = coroutine.yield
local host_future_wait, host_future_result = bind(host.future_wait), bind(host.future_result)
local AWAIT = raw_setmetatable({}, { __name = "aikit.Await" })
local scheduled = raw_setmetatable({}, { __mode = "k" })

local function await(id)
  local co = co_running()
  if scheduled[co] then
    co_yield(AWAIT, id)
  else
    host_future_wait(id)
  end
  return host_future_result(id)
end
internal.await = await

local function read_one(fmt)
  if raw_type(fmt) == "number" then
    local line = host_readline("")
    if line == nil then return nil end
    return s_sub(line, 1, fmt)
  end
  fmt = s_gsub(raw_tostring(fmt), "^%*", "")
  local kind = s_sub(fmt, 1, 1)
  local line = host_readline("")
  if line == nil then return nil end
  if kind == "n" then return raw_tonumber(line) end
  if kind == "L" then return line .. "\n" end
  if kind == "l" or kind == "a" then return line end
  raw_error("bad argument #1 to 'read' (invalid format)", 3)
end

local function io_read(...)
  local n = raw_select("#", ...)
  if n == 0 then return read_one("l") end
  local out = {}
  for i = 1, n do out[i] = read_one((raw_select(i, ...))) end
  return t_unpack(out, 1, n)
end

local stdin = raw_setmetatable({}, {
  __index = {
    read = function(_, ...) return io_read(...) end,
    lines = function(_, fmt) return function() return read_one(fmt or "l") end end,
    close = function() return nil, "cannot close standard file" end,
  },
  __name = "FILE*",
  __tostring = function() return "file (stdin)" end,
})

---------------------------------------------------------------------------------------------
-- Files inside the security policy's allowed paths (opened and checked in Python)
---------------------------------------------------------------------------------------------
local f_open, f_read, f_write = bind(host.file_open), bind(host.file_read), bind(host.file_write)
local f_seek, f_close, f_flush = bind(host.file_seek), bind(host.file_close), bind(host.file_flush)

local file_methods = {}
local file_mt = {
  __index = file_methods, __name = "FILE*",
  __tostring = function(f) return f.closed and "file (closed)" or s_format("file (%s)", f.path) end,
}
-- ``level``: where the error points, counted from here (the user's call of a method is 3 when
-- the method calls this itself).
local function check_file(self, method, level)
  if raw_getmetatable(self) ~= file_mt then
    raw_error(s_format("bad argument #1 to '%s' (FILE* expected, got %s): call it as file:%s(...)",
                       method, raw_type(self), method), level)
  end
end
local function file_handle(self, method)
  check_file(self, method, 4)
  if self.closed then raw_error("attempt to use a closed file", 3) end
  return self.handle
end
function file_methods.read(self, ...)
  local h = file_handle(self, "read")
  local n = raw_select("#", ...)
  if n == 0 then return f_read(h, "l") end
  local out = {}
  for i = 1, n do
    out[i] = f_read(h, (raw_select(i, ...)))
    if out[i] == nil then return t_unpack(out, 1, i) end
  end
  return t_unpack(out, 1, n)
end
function file_methods.write(self, ...)
  local h = file_handle(self, "write")
  f_write(h, written(...))
  return self
end
function file_methods.lines(self, fmt)
  local h = file_handle(self, "lines")
  return function() return f_read(h, fmt or "l") end
end
function file_methods.seek(self, whence, offset)
  return f_seek(file_handle(self, "seek"), whence or "cur", offset or 0)
end
function file_methods.flush(self) f_flush(file_handle(self, "flush")); return self end
function file_methods.setvbuf() return true end
function file_methods.close(self)
  check_file(self, "close", 3)
  if not self.closed then f_close(self.handle); self.closed = true end
  return true
end
file_mt.__close = file_methods.close
file_mt.__gc = function(self) if not self.closed then raw_pcall(f_close, self.handle) end end

-- Finalizers (__gc) are switched off when the engine closes (internal.disarm_finalizers): the
-- Lua state itself is freed later, whenever Python collects the engine (possibly as the
-- interpreter exits, while it tears down the very objects a finalizer would call back into), so
-- a finalizer that calls Python then would crash the process. The metatables with a __gc that
-- scripts set are remembered for that (weakly: a metatable no object uses is forgotten).
local finalizing_mts = raw_setmetatable({}, { __mode = "k" })
local function setmetatable_(t, mt)
  raw_setmetatable(t, mt)
  if raw_type(mt) == "table" and raw_rawget(mt, "__gc") ~= nil then finalizing_mts[mt] = true end
  return t
end
function internal.disarm_finalizers()
  collectgarbage("collect")  -- the finalizers of what is garbage already run now, while all is alive
  for mt in raw_next, finalizing_mts do rawset(mt, "__gc", nil) end
  file_mt.__gc = nil  -- (the engine has closed the files)
end

local function io_open(path, mode)
  if raw_type(path) ~= "string" then raw_error("bad argument #1 to 'open' (string expected)", 2) end
  local ok, handle = raw_pcall(f_open, path, mode or "r")
  if not ok then
    if is_stop(handle) then raw_error(handle, 0) end
    return nil, raw_type(handle) == "table" and handle.message or raw_tostring(handle)
  end
  return raw_setmetatable({ handle = handle, path = path, closed = false }, file_mt)
end

local function io_lines(path, fmt)
  if path == nil then return stdin:lines(fmt) end
  local f, err = io_open(path, "r")
  if not f then raw_error(err, 2) end
  return function()
    local v = f:read(fmt or "l")
    if v == nil then f:close() end
    return v
  end, nil, nil, f
end

local function io_type(obj)
  local mt = raw_getmetatable(obj)
  if mt == file_mt then return obj.closed and "closed file" or "file" end
  if obj == stdout or obj == stderr or obj == stdin then return "file" end
  return nil
end

---------------------------------------------------------------------------------------------
-- The user environment
---------------------------------------------------------------------------------------------
local function copy(t, except)
  local c = {}
  for k, v in raw_pairs(t) do if not (except and except[k]) then c[k] = v end end
  return c
end

local safe_string = copy(string, { dump = true })
-- find/match/gmatch/gsub that fall back to a Lua matcher (patterns.lua) when a pattern could
-- backtrack for long: the C matcher never reaches the interrupt hook.
local interruptible_patterns = host.patterns(string)
for _, name in raw_ipairs({ "find", "match", "gmatch", "gsub" }) do
  safe_string[name] = interruptible_patterns[name]
end
internal.patterns = interruptible_patterns
-- Strings index their methods through the metatable shared by all strings: point it at the
-- sandbox copy so `("").dump` and getmetatable("").__index do not reach the real library.
raw_getmetatable("").__index = safe_string

local safe_os = {
  clock = os.clock, date = os.date, time = os.time, difftime = os.difftime,
  getenv = bind(host.getenv),
  remove = function(path)
    local ok, err = raw_pcall(bind(host.file_remove), path)
    if ok then return true end
    if is_stop(err) then raw_error(err, 0) end
    return nil, raw_type(err) == "table" and err.message or raw_tostring(err)
  end,
  rename = function(src, dst)
    local ok, err = raw_pcall(bind(host.file_rename), src, dst)
    if ok then return true end
    if is_stop(err) then raw_error(err, 0) end
    return nil, raw_type(err) == "table" and err.message or raw_tostring(err)
  end,
}

local safe_coroutine = copy(coroutine)
safe_coroutine.create = safe_create
safe_coroutine.resume = safe_resume
safe_coroutine.wrap = safe_wrap
safe_coroutine.close = safe_close

local env = {
  assert = assert, error = raw_error, getmetatable = raw_getmetatable, ipairs = raw_ipairs,
  next = raw_next, pairs = raw_pairs, pcall = safe_pcall, print = print_, rawequal = raw_rawequal,
  rawget = raw_rawget, rawlen = rawlen, rawset = rawset, select = raw_select,
  setmetatable = setmetatable_, tonumber = raw_tonumber, tostring = raw_tostring, type = raw_type,
  xpcall = safe_xpcall, collectgarbage = collectgarbage, _VERSION = _VERSION,
  warn = function(...)
    local parts = { ... }
    for i = 1, raw_select("#", ...) do  -- as Lua's warn: strings (or numbers), at least one
      local kind = raw_type(parts[i])
      if kind ~= "string" and kind ~= "number" then
        raw_error(s_format("bad argument #%d to 'warn' (string expected, got %s)", i, kind), 2)
      end
    end
    if raw_select("#", ...) == 0 then raw_error("bad argument #1 to 'warn' (string expected, got no value)", 2) end
    if parts[1] == "@on" or parts[1] == "@off" then return end
    host_write("stderr", "Lua warning: " .. t_concat(parts) .. "\n")
  end,
  string = safe_string, table = copy(table), math = copy(math), utf8 = copy(utf8),
  coroutine = safe_coroutine, os = safe_os,
  io = {
    write = function(...) return stdout:write(...) end,
    read = io_read, lines = io_lines, open = io_open, type = io_type,
    stdout = stdout, stderr = stderr, stdin = stdin,
  },
  sleep = function(seconds) await(host_sleep_start(seconds)) end,
}
env._G = env
internal.env = env

-- Reverse map value -> documented name, so inspect can show the doc of aliased library functions.
local docname = raw_setmetatable({}, { __mode = "k" })
for name, value in raw_pairs(env) do
  if raw_type(value) == "function" then docname[value] = name end
  if raw_type(value) == "table" and value ~= env then
    docname[value] = name
    for k, v in raw_pairs(value) do
      if raw_type(v) == "function" and docname[v] == nil then docname[v] = name .. "." .. k end
    end
  end
end
internal.docname = docname

-- Values a notebook should not echo as a cell result (io.write's chaining return, display handles).
function internal.all_quiet(values)
  for i = 1, values.n or #values do
    local mt = raw_getmetatable(values[i])
    if not (raw_type(mt) == "table" and raw_rawget(mt, "__quiet")) then return false end
  end
  return true
end

-- A cell's result as text/plain, or nil when no value is worth echoing (one call for both checks).
function internal.render_result(values)
  if internal.all_quiet(values) then return nil end
  return internal.render_all(values)
end

function internal.register_doc(value, name)
  docname[value] = name
end

---------------------------------------------------------------------------------------------
-- Running code: compile with the cell's chunk name, run under our own xpcall + traceback
---------------------------------------------------------------------------------------------
-- Identity of a table without running metamethods (for cycle detection from Python).
-- Called from Python to rebind Lua values to the main thread (host.py, CoroutineArguments), and
-- to make tables bound to it (convert.new_table).
function internal.anchor(...)
  return ...
end

function internal.new_table()
  return {}
end

function internal.address(t)
  return s_format("%p", t)
end

function internal.compile(code, chunkname)
  local fn, err = raw_load(code, chunkname, "t", env)
  return fn, err
end

local function handler(e)
  if raw_rawequal(e, INTERRUPT) then return { interrupt = true, traceback = debug_traceback(nil, 2) } end
  local uncaught = debug_handlers.uncaught
  if uncaught then uncaught(e) end
  local message
  if raw_type(e) == "table" and (raw_getmetatable(e) == error_mt or
      (raw_getmetatable(e) == nil and raw_type(e.code) == "string" and raw_type(e.message) == "string")) then
    -- level 3: skip the C `error` that raised it, which says nothing about where the problem is
    return { code = e.code, message = raw_tostring(e.message), details = e.details,
             traceback = debug_traceback(nil, 3) }
  end
  local ok, s = raw_pcall(raw_tostring, e)
  message = ok and s or ("(error object is a " .. raw_type(e) .. " value)")
  if raw_type(e) ~= "string" and raw_type(e) ~= "number" and not (raw_type(e) == "table" and raw_getmetatable(e) and raw_getmetatable(e).__tostring) then
    message = "(error object is a " .. raw_type(e) .. " value) " .. repr(e, { max_chars = 2000 })
  end
  return { message = message, traceback = debug_traceback(nil, 2) }
end

local function pack_ok(ok, ...)
  if ok then return { ok = true, values = t_pack(...) } end
  local info = ...
  if raw_type(info) ~= "table" then info = { message = raw_tostring(info) } end
  info.ok = false
  return info
end

function internal.run(fn, ...)
  return pack_ok(raw_xpcall(fn, handler, ...))
end

-- Coroutines the workflow scheduler drives, by id (lupa hands unstarted coroutines to Python as
-- functions, so they stay here). step_coroutine(fn) -> id, state address; step_resume(id, ...)
-- runs it to its next await: ("await", future id), ("done", packed values), ("error", info as
-- run gives it) or ("cancelled") when the step's cancel (CANCEL, raised by the hook) stopped it.
-- A coroutine stays here until step_release, even once dead, so its address is not reused
-- while Python may still cancel it by id.
local step_cos, step_ids = {}, 0

function internal.step_coroutine(fn)
  local co = safe_create(fn)
  scheduled[co] = true
  step_ids = step_ids + 1
  step_cos[step_ids] = co
  return step_ids, coaddress[co]
end

function internal.step_resume(id, ...)
  local co = step_cos[id]
  if co == nil or co_status(co) ~= "suspended" then raw_error("no such step coroutine", 0) end
  host_co_enter(coaddress[co], true)
  co_chain[#co_chain + 1] = co
  local r = t_pack(co_resume(co, ...))
  co_chain[#co_chain] = nil
  host_co_leave()
  if not r[1] then
    local e = r[2]
    if raw_rawequal(e, INTERRUPT) then raw_error(INTERRUPT, 0) end
    if raw_rawequal(e, CANCEL) then return "cancelled", nil end
    local info = handler(e)
    info.traceback = debug_traceback(co)
    return "error", info
  end
  if co_status(co) == "dead" then
    return "done", t_pack(t_unpack(r, 2, r.n))
  end
  if raw_rawequal(r[2], AWAIT) then return "await", r[3] end
  return "await", nil
end

-- Forget a step coroutine (closing it if it is suspended on an await).
function internal.step_release(id)
  local co = step_cos[id]
  step_cos[id] = nil
  if co ~= nil and co_status(co) == "suspended" then safe_close(co) end
end

---------------------------------------------------------------------------------------------
-- Introspection for complete/inspect: resolve dotted paths without running __index functions
---------------------------------------------------------------------------------------------
local function lookup(t, key)
  for _ = 1, 16 do
    local tt = raw_type(t)
    if tt == "table" then
      local v = raw_rawget(t, key)
      if v ~= nil then return v end
    elseif tt ~= "string" then
      return nil
    end
    local mt = raw_getmetatable(t)
    local index = raw_type(mt) == "table" and raw_rawget(mt, "__index") or nil
    if raw_type(index) ~= "table" then return nil end
    t = index
  end
end

function internal.resolve(path)
  local v = env
  for i = 1, #path do
    v = lookup(v, path[i])
    if v == nil then return nil end
  end
  return v
end

-- Names reachable from a value: own string keys plus those of __index tables (methods).
function internal.members(v, methods_only)
  local names, seen = {}, {}
  for _ = 1, 16 do
    if raw_type(v) == "table" then
      for k, item in raw_next, v do
        if raw_type(k) == "string" and not seen[k] and s_find(k, IDENT) then
          if not methods_only or raw_type(item) == "function" or
             (raw_type(item) == "table" and raw_getmetatable(item) and raw_getmetatable(item).__call) then
            seen[k] = true
            names[#names + 1] = k
          end
        end
      end
    elseif raw_type(v) ~= "string" then
      break
    end
    local mt = raw_getmetatable(v)
    v = raw_type(mt) == "table" and raw_rawget(mt, "__index") or nil
    if raw_type(v) ~= "table" then break end
  end
  t_sort(names)
  return names
end

function internal.describe(v)
  local info = { type = raw_type(v), repr = repr(v, { max_items = 50, max_chars = 4000 }), docname = docname[v] }
  if raw_type(v) == "table" then
    local keys, n = {}, raw_rawlen(v)
    for k in raw_next, v do
      if raw_type(k) == "string" then keys[#keys + 1] = k end
      if #keys >= 200 then break end
    end
    t_sort(keys)
    if n > 0 then t_insert(keys, 1, n == 1 and "[1]" or s_format("[1..%d]", n)) end
    info.keys = keys
    info.length = n
  end
  return info
end

return internal
