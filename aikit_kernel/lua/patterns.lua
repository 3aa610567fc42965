-- Lua patterns that an interrupt can stop.
--
-- string.find/match/gmatch/gsub run in C, where the interrupt hook never fires: a pattern that
-- backtracks (string.find(("a"):rep(40) .. "b", ("a*"):rep(30) .. "c")) keeps the kernel at 100 %
-- CPU until it is restarted. This chunk returns replacements for those four functions. Each call
-- estimates the matcher's worst case from the pattern (its backtracking points) and the subject's
-- length; when that is small it calls the C function, otherwise it runs the same algorithm
-- written in Lua (a line-by-line port of Lua 5.4's lstrlib.c matcher), which the interrupt hook
-- reaches. Results and error messages are the same either way (tests compare them).
local native = ...
local n_find, n_match, n_gmatch, n_gsub = native.find, native.match, native.gmatch, native.gsub
local byte, sub, s_len, tostring, type, error, select = native.byte, native.sub, native.len, tostring, type, error, select
local t_concat, m_type, t_pack = table.concat, math.type, table.pack

local L_ESC, MAXCCALLS, MAXCAPTURES = 37, 200, 32 -- '%'
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local B_OPEN, B_CLOSE, B_CARET, B_DOLLAR, B_DOT, B_DASH = 40, 41, 94, 36, 46, 45 -- ( ) ^ $ . -
local B_LBRACKET, B_RBRACKET, B_STAR, B_PLUS, B_QUESTION = 91, 93, 42, 43, 63

-- Worst-case work the C matcher may do before the Lua one is used instead.
local MAX_NATIVE_STEPS = 1e8

---------------------------------------------------------------------------------------------
-- The estimate
---------------------------------------------------------------------------------------------
-- The exponent of the matcher's worst case: one factor of the subject's length per repetition
-- item that has more pattern after it (when that fails, the repetition backtracks), plus one
-- when the search tries every start position. Cached per pattern.
local exponents = setmetatable({}, { __mode = "k" })

local function backtracking_points(p)
  local count, i, n = 0, 1, #p
  if byte(p, 1) == B_CARET then i = 2 end
  while i <= n do
    local c = byte(p, i)
    local item_end -- index just after the single-character class starting at i
    if c == L_ESC then
      local d = byte(p, i + 1)
      if d == 98 then i = i + 4; goto continue end -- %bxy
      if d == 102 then -- %f[set]
        i = i + 2
        if byte(p, i) == B_LBRACKET then
          i = i + 1
          if byte(p, i) == B_CARET then i = i + 1 end
          repeat
            local cc = byte(p, i); i = i + 1
            if cc == L_ESC then i = i + 1 end
          until i > n or byte(p, i) == B_RBRACKET
          i = i + 1
        end
        goto continue
      end
      item_end = i + 2
    elseif c == B_LBRACKET then
      local j = i + 1
      if byte(p, j) == B_CARET then j = j + 1 end
      repeat
        local cc = byte(p, j); j = j + 1
        if cc == L_ESC then j = j + 1 end
      until j > n or byte(p, j) == B_RBRACKET
      item_end = j + 1
    elseif c == B_OPEN or c == B_CLOSE then
      i = i + 1; goto continue
    else
      item_end = i + 1
    end
    do
      local q = byte(p, item_end)
      if q == B_STAR or q == B_PLUS or q == B_DASH or q == B_QUESTION then
        local rest = item_end + 1
        while byte(p, rest) == B_CLOSE do rest = rest + 1 end
        if rest <= n and not (rest == n and byte(p, rest) == B_DOLLAR) then count = count + 1 end
        i = item_end + 1
      else
        i = item_end
      end
    end
    ::continue::
  end
  return count
end

local function exponent(p, searching)
  local e = exponents[p]
  if e == nil then
    e = backtracking_points(p)
    exponents[p] = e
  end
  if searching and byte(p, 1) ~= B_CARET then e = e + 1 end
  return e
end


-- The matcher's own errors travel as {pattern_error = message} up to the public function, which
-- raises the message at its caller's line as the C functions do; anything else (an error in a
-- replacement function, an interrupt) passes through unchanged.
local function fail(message)
  error({ pattern_error = message }, 0)
end

-- The longest subject the C matcher may take for each exponent (MAX_NATIVE_STEPS ^ (1 / e)).
local max_native_len = setmetatable({}, { __index = function(t, e)
  local n = e < 2 and math.huge or math.floor(MAX_NATIVE_STEPS ^ (1 / e))
  t[e] = n
  return n
end })

-- Per pattern, the longest subject the C function may take: find/match/gsub search every start
-- position unless the pattern is anchored; gmatch always does ('^' is no anchor there).
local function limits(p)
  local e = exponents[p]
  if e == nil then
    e = backtracking_points(p)
    exponents[p] = e
  end
  return max_native_len[byte(p, 1) == B_CARET and e or e + 1], max_native_len[e + 1]
end
local search_limit = setmetatable({}, { __index = function(t, p)
  local limit = limits(p)
  t[p] = limit
  return limit
end })
local gmatch_limit = setmetatable({}, { __index = function(t, p)
  local _, limit = limits(p)
  t[p] = limit
  return limit
end })

---------------------------------------------------------------------------------------------
-- The matcher (lstrlib.c, Lua 5.4), positions are 1-based indexes into the subject
---------------------------------------------------------------------------------------------
local function class_match(c, cl)
  local lower = (cl >= 65 and cl <= 90) and cl + 32 or cl
  local res
  if lower == 97 then res = (c >= 65 and c <= 90) or (c >= 97 and c <= 122) -- a
  elseif lower == 99 then res = c < 32 or c == 127 -- c
  elseif lower == 100 then res = c >= 48 and c <= 57 -- d
  elseif lower == 103 then res = c >= 33 and c <= 126 -- g
  elseif lower == 108 then res = c >= 97 and c <= 122 -- l
  elseif lower == 112 then -- p
    res = (c >= 33 and c <= 47) or (c >= 58 and c <= 64) or (c >= 91 and c <= 96) or (c >= 123 and c <= 126)
  elseif lower == 115 then res = c == 32 or (c >= 9 and c <= 13) -- s
  elseif lower == 117 then res = c >= 65 and c <= 90 -- u
  elseif lower == 119 then res = (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) -- w
  elseif lower == 120 then res = (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102) -- x
  else return cl == c end
  if cl >= 65 and cl <= 90 then return not res end
  return res
end

local function class_end(ms, p)
  local pat = ms.p
  local c = byte(pat, p); p = p + 1
  if c == L_ESC then
    if p > ms.p_len then fail("malformed pattern (ends with '%')") end
    return p + 1
  elseif c == B_LBRACKET then
    if byte(pat, p) == B_CARET then p = p + 1 end
    repeat
      if p > ms.p_len then fail("malformed pattern (missing ']')") end
      local cc = byte(pat, p); p = p + 1
      if cc == L_ESC and p <= ms.p_len then p = p + 1 end
    until byte(pat, p) == B_RBRACKET
    return p + 1
  end
  return p
end

local function match_bracket_class(ms, c, p, ec)
  local pat, sig = ms.p, true
  if byte(pat, p + 1) == B_CARET then sig = false; p = p + 1 end
  p = p + 1
  while p < ec do
    local pc = byte(pat, p)
    if pc == L_ESC then
      p = p + 1
      if class_match(c, byte(pat, p)) then return sig end
    elseif byte(pat, p + 1) == B_DASH and p + 2 < ec then
      p = p + 2
      if pc <= c and c <= byte(pat, p) then return sig end
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function single_match(ms, s, p, ep)
  if s > ms.src_len then return false end
  local c, pc = byte(ms.src, s), byte(ms.p, p)
  if pc == B_DOT then return true
  elseif pc == L_ESC then return class_match(c, byte(ms.p, p + 1))
  elseif pc == B_LBRACKET then return match_bracket_class(ms, c, p, ep - 1)
  end
  return pc == c
end

local do_match

local function match_balance(ms, s, p)
  if p >= ms.p_len then fail("malformed pattern (missing arguments to '%b')") end
  local src = ms.src
  if byte(src, s) ~= byte(ms.p, p) then return nil end
  local b, e, cont = byte(ms.p, p), byte(ms.p, p + 1), 1
  s = s + 1
  while s <= ms.src_len do
    local c = byte(src, s)
    if c == e then
      cont = cont - 1
      if cont == 0 then return s + 1 end
    elseif c == b then
      cont = cont + 1
    end
    s = s + 1
  end
  return nil
end

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = do_match(ms, s + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = do_match(ms, s, ep + 1)
    if res then return res end
    if single_match(ms, s, p, ep) then s = s + 1 else return nil end
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level
  if level >= MAXCAPTURES then fail("too many captures") end
  ms.cap_init[level] = s
  ms.cap_len[level] = what
  ms.level = level + 1
  local res = do_match(ms, s, p)
  if res == nil then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l = -1
  for level = ms.level - 1, 0, -1 do
    if ms.cap_len[level] == CAP_UNFINISHED then l = level; break end
  end
  if l < 0 then fail("invalid pattern capture") end
  ms.cap_len[l] = s - ms.cap_init[l]
  local res = do_match(ms, s, p)
  if res == nil then ms.cap_len[l] = CAP_UNFINISHED end
  return res
end

local function match_capture(ms, s, digit)
  local l = digit - 49 -- '1'
  if l < 0 or l >= ms.level or ms.cap_len[l] == CAP_UNFINISHED then
    fail("invalid capture index %" .. (l + 1))
  end
  local len, init = ms.cap_len[l], ms.cap_init[l]
  -- a position capture's length (CAP_POSITION) is a huge size_t in C: it never matches
  if len >= 0 and ms.src_len - s + 1 >= len and sub(ms.src, init, init + len - 1) == sub(ms.src, s, s + len - 1) then
    return s + len
  end
  return nil
end

do_match = function(ms, s, p)
  ms.depth = ms.depth - 1
  if ms.depth == 0 then fail("pattern too complex") end
  local pat, p_end = ms.p, ms.p_len + 1
  while true do
    if p == p_end then break end
    local pc = byte(pat, p)
    if pc == B_OPEN then
      if byte(pat, p + 1) == B_CLOSE then s = start_capture(ms, s, p + 2, CAP_POSITION)
      else s = start_capture(ms, s, p + 1, CAP_UNFINISHED) end
      break
    elseif pc == B_CLOSE then
      s = end_capture(ms, s, p + 1)
      break
    elseif pc == B_DOLLAR and p + 1 == p_end then
      if s ~= ms.src_len + 1 then s = nil end
      break
    end
    local next_p
    if pc == L_ESC then
      local d = byte(pat, p + 1)
      if d == 98 then -- %b
        s = match_balance(ms, s, p + 2)
        if s == nil then break end
        next_p = p + 4
      elseif d == 102 then -- %f
        p = p + 2
        if byte(pat, p) ~= B_LBRACKET then fail("missing '[' after '%f' in pattern") end
        local ep = class_end(ms, p)
        local previous = (s == ms.src_init) and 0 or byte(ms.src, s - 1)
        local current = byte(ms.src, s) or 0
        if not match_bracket_class(ms, previous, p, ep - 1) and match_bracket_class(ms, current, p, ep - 1) then
          next_p = ep
        else
          s = nil
          break
        end
      elseif d and d >= 48 and d <= 57 then -- %0-%9
        s = match_capture(ms, s, d)
        if s == nil then break end
        next_p = p + 2
      end
    end
    if next_p then
      p = next_p
    else -- default: a single-character class, perhaps repeated
      local ep = class_end(ms, p)
      local q = byte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if q == B_STAR or q == B_QUESTION or q == B_DASH then
          p = ep + 1
        else
          s = nil
          break
        end
      elseif q == B_QUESTION then
        local res = do_match(ms, s + 1, ep + 1)
        if res then s = res; break end
        p = ep + 1
      elseif q == B_PLUS then
        s = max_expand(ms, s + 1, p, ep); break
      elseif q == B_STAR then
        s = max_expand(ms, s, p, ep); break
      elseif q == B_DASH then
        s = min_expand(ms, s, p, ep); break
      else
        s = s + 1; p = ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function new_state(src, pat)
  return { src = src, src_len = #src, src_init = 1, p = pat, p_len = #pat, level = 0, depth = MAXCCALLS,
           cap_init = {}, cap_len = {} }
end

local function reprep(ms)
  ms.level = 0
  ms.depth = MAXCCALLS
end

local function one_capture(ms, i, s, e)
  if i >= ms.level then
    if i ~= 0 then fail("invalid capture index %" .. (i + 1)) end
    return sub(ms.src, s, e - 1)
  end
  local len, init = ms.cap_len[i], ms.cap_init[i]
  if len == CAP_UNFINISHED then fail("unfinished capture") end
  if len == CAP_POSITION then return init end
  return sub(ms.src, init, init + len - 1)
end

local function captures(ms, s, e, whole_if_none)
  local n = (ms.level == 0 and whole_if_none) and 1 or ms.level
  local out = {}
  for i = 0, n - 1 do out[i + 1] = one_capture(ms, i, s, e) end
  return out, n
end

local t_unpack = table.unpack

local function posrelat(pos, len)
  if pos > 0 then return pos
  elseif pos == 0 then return 1
  elseif pos < -len then return 1
  end
  return len + pos + 1
end

---------------------------------------------------------------------------------------------
-- The four functions
---------------------------------------------------------------------------------------------
local function find_aux(is_find, s, p, init)
  s, p = tostring(s), tostring(p)
  local ls = #s
  init = posrelat(init == nil and 1 or init, ls)
  if init > ls + 1 then return nil end
  local anchor = byte(p, 1) == B_CARET
  local pat = anchor and sub(p, 2) or p
  local ms = new_state(s, pat)
  local s1 = init
  repeat
    reprep(ms)
    local e = do_match(ms, s1, 1)
    if e then
      if is_find then
        local caps, n = captures(ms, nil, nil, false)
        return s1, e - 1, t_unpack(caps, 1, n)
      end
      local caps, n = captures(ms, s1, e, true)
      return t_unpack(caps, 1, n)
    end
    s1 = s1 + 1
  until s1 > ms.src_len + 1 or anchor
  return nil
end

local function has_specials(p) -- lstrlib's SPECIALS: "^$*+?.([%-" (')' and ']' alone are plain)
  return n_find(p, "[%^%$%*%+%?%.%(%[%%%-]") ~= nil
end

local function lua_gmatch(s, p, init)
  s, p = tostring(s), tostring(p)
  local ls = #s
  local start = posrelat(init == nil and 1 or init, ls)
  if start > ls + 1 then start = ls + 2 end -- as C: past the end, nothing matches
  local ms = new_state(s, p)
  local src, lastmatch = start, nil
  local function step()
    while src <= ms.src_len + 1 do
      reprep(ms)
      local e = do_match(ms, src, 1)
      if e and e ~= lastmatch then
        local from = src
        src, lastmatch = e, e
        local caps, n = captures(ms, from, e, true)
        return t_unpack(caps, 1, n)
      end
      src = src + 1
    end
    return nil
  end
  return step
end

local function add_string(ms, out, repl, s, e)
  local i, l = 1, #repl
  while i <= l do
    local c = byte(repl, i)
    if c == L_ESC then
      i = i + 1
      local d = byte(repl, i)
      if d == L_ESC then out[#out + 1] = "%"
      elseif d == 48 then out[#out + 1] = sub(ms.src, s, e - 1)
      elseif d and d >= 49 and d <= 57 then out[#out + 1] = tostring(one_capture(ms, d - 49, s, e))
      else fail("invalid use of '%' in replacement string") end
      i = i + 1
    else
      local j = n_find(repl, "%", i, true) or (l + 1)
      out[#out + 1] = sub(repl, i, j - 1)
      i = j
    end
  end
end

local ADDED = {} -- the replacement string was already added

local function lua_gsub(s, p, repl, max_n)
  local tr = type(repl)
  s, p = tostring(s), tostring(p)
  if tr == "number" then repl = tostring(repl); tr = "string" end
  local anchor = byte(p, 1) == B_CARET
  local pat = anchor and sub(p, 2) or p
  local ms = new_state(s, pat)
  local src, lastmatch, n, out = 1, nil, 0, {}
  max_n = max_n == nil and #s + 1 or max_n
  while n < max_n do
    reprep(ms)
    local e = do_match(ms, src, 1)
    if e and e ~= lastmatch then
      n = n + 1
      local value = ADDED
      if tr == "string" then
        add_string(ms, out, repl, src, e)
      elseif tr == "function" then
        local caps, k = captures(ms, src, e, true)
        value = repl(t_unpack(caps, 1, k))
      else
        value = repl[one_capture(ms, 0, src, e)]
      end
      if value ~= ADDED then
        if not value then
          out[#out + 1] = sub(s, src, e - 1)
        elseif type(value) == "string" or m_type(value) ~= nil then
          out[#out + 1] = tostring(value)
        else
          fail("invalid replacement value (a " .. type(value) .. ")")
        end
      end
      src, lastmatch = e, e
    elseif src <= ms.src_len then
      out[#out + 1] = sub(s, src, src)
      src = src + 1
    else
      break
    end
    if anchor then break end
  end
  out[#out + 1] = sub(s, src)
  return t_concat(out), n
end

---------------------------------------------------------------------------------------------
-- The public functions. They check their arguments as lstrlib does (same messages), then call the
-- C function or the Lua matcher; errors of either are raised at the caller's line, as C's are.
---------------------------------------------------------------------------------------------
local function pass(...) return ... end

-- Called by check_* (called by a public function): level 4 is the public function's caller.
local function arg_error(n, name, message)
  error("bad argument #" .. n .. " to '" .. name .. "' (" .. message .. ")", 4)
end

local function type_name(count, n, v)
  return n > count and "no value" or type(v)
end

local function check_string(v, n, name, count)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  arg_error(n, name, "string expected, got " .. type_name(count, n, v))
end

local function opt_integer(v, n, name, default)
  if v == nil then return default end
  local num = type(v) == "number" and v or (type(v) == "string" and tonumber(v))
  if not num then arg_error(n, name, "number expected, got " .. type(v)) end
  local int = math.tointeger(num)
  if not int then arg_error(n, name, "number has no integer representation") end
  return int
end

local function check_repl(v, count)
  local t = type(v)
  if t == "string" or t == "number" or t == "table" or t == "function" then return t end
  arg_error(3, "gsub", "string/function/table expected, got " .. type_name(count, 3, v))
end

-- The port's errors: never tail-called (`pass(...)` keeps the public function's frame), so level 3
-- is the public function's caller, where C reports its errors; anything else (an error in a
-- replacement function, an interrupt) passes unchanged. (The C functions' own errors carry no
-- position of this chunk: the engine loads it without debug information.)
local function port_result(ok, ...)
  if ok then return ... end
  local err = ...
  if type(err) == "table" and err.pattern_error then error(err.pattern_error, 3) end
  error(err, 0)
end

local M = {}

function M.find(...)
  local s, p, init, plain = ...
  if type(s) ~= "string" or type(p) ~= "string" then
    local count = select("#", ...)
    s, p = check_string(s, 1, "find", count), check_string(p, 2, "find", count)
  end
  if init ~= nil then init = opt_integer(init, 3, "find", 1) end
  if plain or #s <= search_limit[p] then
    return n_find(s, p, init, plain)
  end
  return pass(port_result(pcall(find_aux, true, s, p, init)))
end

function M.match(...)
  local s, p, init = ...
  if type(s) ~= "string" or type(p) ~= "string" then
    local count = select("#", ...)
    s, p = check_string(s, 1, "match", count), check_string(p, 2, "match", count)
  end
  if init ~= nil then init = opt_integer(init, 3, "match", 1) end
  if #s <= search_limit[p] then
    return n_match(s, p, init)
  end
  return pass(port_result(pcall(find_aux, false, s, p, init)))
end

function M.gmatch(...)
  local s, p, init = ...
  if type(s) ~= "string" or type(p) ~= "string" then
    local count = select("#", ...)
    s, p = check_string(s, 1, "gmatch", count), check_string(p, 2, "gmatch", count)
  end
  if init ~= nil then init = opt_integer(init, 3, "gmatch", 1) end
  if #s <= gmatch_limit[p] then
    return n_gmatch(s, p, init) -- the C iterator, called from the caller's loop: its errors point there
  end
  local step = lua_gmatch(s, p, init)
  return function() return pass(port_result(pcall(step))) end
end

function M.gsub(...)
  local s, p, repl, max_n = ...
  local tr = type(repl)
  if type(s) ~= "string" or type(p) ~= "string" or (tr ~= "string" and tr ~= "function" and tr ~= "table") then
    local count = select("#", ...)
    s, p = check_string(s, 1, "gsub", count), check_string(p, 2, "gsub", count)
    tr = check_repl(repl, count)
  end
  if max_n ~= nil then max_n = opt_integer(max_n, 4, "gsub", nil) end
  if #s <= search_limit[p] then
    return n_gsub(s, p, repl, max_n)
  end
  return pass(port_result(pcall(lua_gsub, s, p, repl, max_n)))
end

-- For the tests: the Lua matcher whatever the estimate says, and the estimate itself.
M.lua = { find = function(s, p, init)
            if not has_specials(tostring(p)) then return n_find(s, p, init, true) end
            return pass(port_result(pcall(find_aux, true, s, p, init)))
          end,
          match = function(s, p, init) return pass(port_result(pcall(find_aux, false, s, p, init))) end,
          gmatch = function(s, p, init)
            local step = lua_gmatch(s, p, init)
            return function() return pass(port_result(pcall(step))) end
          end,
          gsub = function(s, p, repl, max_n) return pass(port_result(pcall(lua_gsub, s, p, repl, max_n))) end }
M.exponent = exponent

return M
