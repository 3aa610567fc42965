"""Short documentation for the Lua 5.4 standard library as exposed in aikit.

Used by the kernel's ``inspect_request`` handler (Shift+Tab in Jupyter) and
by code completion.  Every entry's first line is a signature in the style of
the Lua reference manual, followed by a blank line and a short explanation
(optionally ending with an ``Example:`` line).

Only what the aikit sandbox actually exposes is documented here.  Functions
the sandbox removes (``load``, ``loadfile``, ``dofile``, ``require``,
``string.dump``, ``os.exit``, ``os.tmpname``, ...) deliberately have no entry,
so that completion never suggests them.
"""

from __future__ import annotations


def _doc(signature: str, text: str, example: str | None = None) -> str:
    """Assemble one doc string: signature, blank line, text, optional example."""
    parts = [signature, "", text]
    if example:
        parts.append("Example: " + example)
    return "\n".join(parts)


STDLIB_DOCS: dict[str, str] = {
    # ------------------------------------------------------------------
    # Base functions and values
    # ------------------------------------------------------------------
    "assert": _doc(
        "assert(v [, message]) -> v, ···",
        "Raises an error when v is false or nil; otherwise hands back all of "
        "its arguments unchanged. The error value is message, or "
        '"assertion failed!" when no message is given. Handy for turning a '
        "nil, err result into an error.",
        'local n = assert(tonumber("42"), "not a number")',
    ),
    "collectgarbage": _doc(
        "collectgarbage([opt [, arg]]) -> ···",
        "Controls the garbage collector. opt is one of \"collect\" (default: "
        'run a full cycle), "count" (memory in use, in kilobytes), "step", '
        '"isrunning", "incremental" or "generational".',
        'print(collectgarbage("count"))  --> e.g. 23.4 (KB in use)',
    ),
    "error": _doc(
        "error(message [, level])",
        "Raises an error with message as the error value; it never returns. "
        "level selects which position is prepended to a string message: 1 "
        "(default) is where error was called, 2 is that function's caller, "
        "0 adds nothing. The value may be any Lua value, e.g. a table.",
        'error("invalid input", 2)',
    ),
    "getmetatable": _doc(
        "getmetatable(object) -> table | nil",
        "Returns the metatable of object, or nil if it has none. If the "
        "metatable has a __metatable field, that field's value is returned "
        "instead (used to protect metatables).",
        'getmetatable("").__index == string  --> true',
    ),
    "ipairs": _doc(
        "ipairs(t) -> function, t, 0",
        "Returns an iterator over the array part of t: the pairs (1, t[1]), "
        "(2, t[2]), ... stopping at the first nil value.",
        'for i, v in ipairs({"a", "b"}) do print(i, v) end',
    ),
    "next": _doc(
        "next(table [, index]) -> key, value | nil",
        "Returns the key after index in table together with its value, or "
        "nil when index was the last key; with no index it returns the first "
        "pair. The traversal order is unspecified. next(t) == nil is the "
        "usual test for an empty table.",
        "if next(t) == nil then print(\"empty\") end",
    ),
    "pairs": _doc(
        "pairs(t) -> function, t, nil",
        "Returns an iterator over all key-value pairs of t, in no particular "
        "order. If t has a __pairs metamethod, that is called instead. Do not "
        "add new keys to t while traversing it.",
        "for k, v in pairs({x = 1, y = 2}) do print(k, v) end",
    ),
    "pcall": _doc(
        "pcall(f, ···) -> boolean, ···",
        "Calls f with the given arguments in protected mode: an error inside "
        "f is caught instead of propagating. Returns true plus f's results "
        "on success, or false plus the error value on failure.",
        'pcall(error, "boom")  --> false  "boom"',
    ),
    "print": _doc(
        "print(···)",
        "Converts each argument with tostring and writes them to standard "
        "output separated by tabs, followed by a newline. In a notebook the "
        "text shows up as the cell's output. Use string.format or io.write "
        "for precise formatting.",
        'print("x =", 42)  --> x =	42',
    ),
    "rawequal": _doc(
        "rawequal(v1, v2) -> boolean",
        "Compares v1 and v2 for primitive equality, bypassing any __eq "
        "metamethod.",
    ),
    "rawget": _doc(
        "rawget(table, index) -> value",
        "Reads table[index] directly, bypassing any __index metamethod.",
    ),
    "rawlen": _doc(
        "rawlen(v) -> integer",
        "Returns the length of a table or string like the # operator, but "
        "without calling a __len metamethod.",
        "rawlen({1, 2, 3})  --> 3",
    ),
    "rawset": _doc(
        "rawset(table, index, value) -> table",
        "Assigns table[index] = value directly, bypassing any __newindex "
        "metamethod, and returns the table.",
    ),
    "select": _doc(
        "select(index, ···) -> ···",
        "With a number index, returns all extra arguments from position "
        "index onward (a negative index counts from the end). With the "
        'string "#", returns how many extra arguments were passed, nils '
        "included.",
        'select("#", 1, nil, 3)  --> 3',
    ),
    "setmetatable": _doc(
        "setmetatable(table, metatable) -> table",
        "Sets (or, with nil, removes) the metatable of table and returns "
        "table. Fails if the current metatable has a __metatable field. "
        "Only tables can be given metatables from Lua code.",
        "local obj = setmetatable({}, {__index = Base})",
    ),
    "tonumber": _doc(
        "tonumber(e [, base]) -> number | nil",
        "Converts e to a number, returning nil if that is not possible. "
        "Strings may use any Lua numeral syntax (including hex such as "
        '"0x10"). With base (2 to 36), e must be a string holding an integer '
        "written in that base; letters stand for digits above 9.",
        'tonumber("ff", 16)  --> 255',
    ),
    "tostring": _doc(
        "tostring(v) -> string",
        "Converts any value to a human-readable string. A __tostring "
        "metamethod, if present, decides the result; tables and functions "
        "otherwise show their type and address.",
        "tostring(1/0)  --> \"inf\"",
    ),
    "type": _doc(
        "type(v) -> string",
        "Returns the basic type of v as a string: \"nil\", \"boolean\", "
        '"number", "string", "table", "function", "thread" or "userdata". '
        "Use math.type to tell integers from floats.",
        'type(print)  --> "function"',
    ),
    "xpcall": _doc(
        "xpcall(f, msgh, ···) -> boolean, ···",
        "Like pcall, but on error calls the message handler msgh with the "
        "error value before the stack unwinds; whatever msgh returns becomes "
        "the error result.",
        'xpcall(error, function(e) return "handled: " .. e end, "x")  '
        '--> false  "handled: x"',
    ),
    "_G": _doc(
        "_G",
        "The global environment table: every global variable is a field of "
        "_G. In aikit it is the sandbox's environment, so functions the "
        "sandbox removes (load, loadfile, dofile, require, ...) are absent.",
        'for name in pairs(_G) do print(name) end',
    ),
    "_VERSION": _doc(
        "_VERSION",
        'A global string naming the running Lua version, "Lua 5.4".',
        '_VERSION  --> "Lua 5.4"',
    ),
    "warn": _doc(
        "warn(msg1, ···)",
        "Emits a warning built by concatenating the string arguments. A "
        'single argument starting with "@" is a control message: "@on" and '
        '"@off" turn warnings on and off. Whether and where warnings are '
        "displayed depends on the host.",
        'warn("@on"); warn("cache ", "miss")',
    ),
    # ------------------------------------------------------------------
    # string
    # ------------------------------------------------------------------
    "string": _doc(
        "string",
        "String manipulation library; strings also use it as their "
        "metatable's __index, so s:upper() works. Available: byte, char, "
        "find, format, gmatch, gsub, len, lower, match, pack, packsize, rep, "
        "reverse, sub, unpack, upper. string.dump is not available in "
        "aikit. Indices are 1-based and negative indices count from the end.",
    ),
    "string.byte": _doc(
        "string.byte(s [, i [, j]]) -> integer, ···",
        "Returns the numeric byte values of s[i] through s[j]. i defaults to "
        "1 and j defaults to i.",
        'string.byte("ABC", 1, 3)  --> 65  66  67',
    ),
    "string.char": _doc(
        "string.char(···) -> string",
        "Builds a string whose bytes are the given integer codes (0-255).",
        'string.char(72, 105)  --> "Hi"',
    ),
    "string.find": _doc(
        "string.find(s, pattern [, init [, plain]]) -> start, end, ··· | nil",
        "Searches s for the first match of pattern starting at init and "
        "returns the start and end indices plus any captures, or nil if "
        "there is no match. Pass plain = true to search for a literal "
        "substring with no pattern magic.",
        'string.find("hello world", "o w")  --> 5  7',
    ),
    "string.format": _doc(
        "string.format(formatstring, ···) -> string",
        "Returns a string built from a printf-like template. Supports %d, "
        "%i, %u, %c, %x, %X, %o, %e, %E, %f, %g, %G, %a, %A, %s, %%, and %q "
        "(quotes a value so Lua can read it back).",
        'string.format("%5.2f", math.pi)  --> " 3.14"',
    ),
    "string.gmatch": _doc(
        "string.gmatch(s, pattern [, init]) -> function",
        "Returns an iterator that yields each successive match of pattern in "
        "s (its captures, or the whole match if there are none), starting at "
        "position init.",
        'for w in string.gmatch("one two", "%a+") do print(w) end',
    ),
    "string.gsub": _doc(
        "string.gsub(s, pattern, repl [, n]) -> string, integer",
        "Returns a copy of s with matches of pattern replaced, plus the "
        "number of replacements made. repl can be a string (%1..%9 refer to "
        "captures, %0 to the whole match), a table indexed by the first "
        "capture, or a function called with the captures. n limits the "
        "number of replacements.",
        'string.gsub("hello world", "o", "0")  --> "hell0 w0rld"  2',
    ),
    "string.len": _doc(
        "string.len(s) -> integer",
        "Returns the length of s in bytes (same as #s). Multibyte UTF-8 "
        "characters count as several bytes; use utf8.len to count "
        "characters.",
        'string.len("héllo")  --> 6',
    ),
    "string.lower": _doc(
        "string.lower(s) -> string",
        "Returns a copy of s with uppercase letters turned into lowercase "
        "(ASCII letters under the default C locale).",
        'string.lower("ABC")  --> "abc"',
    ),
    "string.match": _doc(
        "string.match(s, pattern [, init]) -> ··· | nil",
        "Finds the first match of pattern in s starting at init and returns "
        "its captures, or the whole match when the pattern has no captures. "
        "Returns nil if nothing matches.",
        'string.match("key=val", "(%w+)=(%w+)")  --> "key"  "val"',
    ),
    "string.pack": _doc(
        "string.pack(fmt, v1, v2, ···) -> string",
        "Serializes the values into a binary string according to the format "
        "fmt (e.g. \"i4\" for a 4-byte integer, \"<\" / \">\" for "
        "endianness, \"z\" for a zero-terminated string). The inverse is "
        "string.unpack.",
        '#string.pack("i4", 7)  --> 4',
    ),
    "string.packsize": _doc(
        "string.packsize(fmt) -> integer",
        "Returns the size in bytes of a string produced by string.pack with "
        "format fmt. The format may not contain variable-length options such "
        "as \"s\" or \"z\".",
        'string.packsize("i4i8")  --> 12',
    ),
    "string.rep": _doc(
        "string.rep(s, n [, sep]) -> string",
        "Returns n copies of s joined together, with sep between them if "
        "given. Returns the empty string when n <= 0.",
        'string.rep("ab", 3, "-")  --> "ab-ab-ab"',
    ),
    "string.reverse": _doc(
        "string.reverse(s) -> string",
        "Returns s with its bytes in reverse order (not UTF-8 aware).",
        'string.reverse("abc")  --> "cba"',
    ),
    "string.sub": _doc(
        "string.sub(s, i [, j]) -> string",
        "Returns the substring of s from index i to j inclusive; j defaults "
        "to -1 (the end). Negative indices count back from the end of the "
        "string.",
        'string.sub("hello", 2, -2)  --> "ell"',
    ),
    "string.unpack": _doc(
        "string.unpack(fmt, s [, pos]) -> ···, nextpos",
        "Reads values from the binary string s (starting at pos) according "
        "to format fmt, the inverse of string.pack. The final result is the "
        "index of the first unread byte.",
        'string.unpack("i2", "\\1\\0")  --> 1  3',
    ),
    "string.upper": _doc(
        "string.upper(s) -> string",
        "Returns a copy of s with lowercase letters turned into uppercase "
        "(ASCII letters under the default C locale).",
        'string.upper("abc")  --> "ABC"',
    ),
    # ------------------------------------------------------------------
    # table
    # ------------------------------------------------------------------
    "table": _doc(
        "table",
        "Functions for working with tables used as lists (sequences with "
        "keys 1..n). Available: concat, insert, move, pack, remove, sort, "
        "unpack.",
    ),
    "table.concat": _doc(
        "table.concat(list [, sep [, i [, j]]]) -> string",
        "Joins list[i]..list[j] into one string with sep between elements. "
        "Elements must be strings or numbers; i defaults to 1 and j to #list.",
        'table.concat({1, 2, 3}, ", ")  --> "1, 2, 3"',
    ),
    "table.insert": _doc(
        "table.insert(list, [pos,] value)",
        "Inserts value at position pos, shifting later elements up. Without "
        "pos the value is appended at the end of the list.",
        'table.insert(t, "last"); table.insert(t, 1, "first")',
    ),
    "table.move": _doc(
        "table.move(a1, f, e, t [, a2]) -> a2",
        "Copies elements a1[f]..a1[e] into a2[t], a2[t+1], ... and returns "
        "a2 (which defaults to a1). Overlapping ranges in the same table are "
        "handled correctly.",
        "table.move({1, 2, 3}, 1, 3, 2)  --> {1, 1, 2, 3}",
    ),
    "table.pack": _doc(
        "table.pack(···) -> table",
        "Returns a new table holding all arguments at keys 1, 2, ... plus a "
        "field n with the argument count, which stays correct even when "
        "some arguments are nil.",
        "table.pack(1, nil, 3).n  --> 3",
    ),
    "table.remove": _doc(
        "table.remove(list [, pos]) -> value",
        "Removes and returns list[pos], shifting later elements down to "
        "close the gap. pos defaults to #list, so the call pops the last "
        "element.",
        "local last = table.remove(stack)",
    ),
    "table.sort": _doc(
        "table.sort(list [, comp])",
        "Sorts list[1]..list[#list] in place. comp(a, b) must return true "
        "when a should come before b (a strict ordering); the default uses "
        "<. The sort is not stable.",
        "table.sort(t, function(a, b) return a > b end)",
    ),
    "table.unpack": _doc(
        "table.unpack(list [, i [, j]]) -> ···",
        "Returns list[i], ..., list[j] as multiple values; i defaults to 1 "
        "and j to #list.",
        "table.unpack({1, 2, 3})  --> 1  2  3",
    ),
    # ------------------------------------------------------------------
    # math
    # ------------------------------------------------------------------
    "math": _doc(
        "math",
        "Mathematical functions and constants. Available: abs, acos, asin, "
        "atan, ceil, cos, deg, exp, floor, fmod, huge, log, max, maxinteger, "
        "min, mininteger, modf, pi, rad, random, randomseed, sin, sqrt, tan, "
        "tointeger, type, ult. Lua 5.4 numbers are either 64-bit integers or "
        "double floats.",
    ),
    "math.abs": _doc(
        "math.abs(x) -> number",
        "Returns the absolute value of x, keeping its integer/float subtype.",
        "math.abs(-3)  --> 3",
    ),
    "math.acos": _doc(
        "math.acos(x) -> number",
        "Returns the arc cosine of x, in radians.",
    ),
    "math.asin": _doc(
        "math.asin(x) -> number",
        "Returns the arc sine of x, in radians.",
    ),
    "math.atan": _doc(
        "math.atan(y [, x]) -> number",
        "Returns the arc tangent of y/x in radians, using the signs of both "
        "arguments to pick the right quadrant (like atan2). x defaults to 1.",
        "math.atan(1, 1)  --> 0.78539816339745",
    ),
    "math.ceil": _doc(
        "math.ceil(x) -> integer",
        "Returns the smallest integral value greater than or equal to x, as "
        "an integer when it fits.",
        "math.ceil(3.2)  --> 4",
    ),
    "math.cos": _doc(
        "math.cos(x) -> number",
        "Returns the cosine of x, which is given in radians.",
    ),
    "math.deg": _doc(
        "math.deg(x) -> number",
        "Converts the angle x from radians to degrees.",
        "math.deg(math.pi)  --> 180.0",
    ),
    "math.exp": _doc(
        "math.exp(x) -> number",
        "Returns e raised to the power x.",
        "math.exp(0)  --> 1.0",
    ),
    "math.floor": _doc(
        "math.floor(x) -> integer",
        "Returns the largest integral value less than or equal to x, as an "
        "integer when it fits.",
        "math.floor(3.7)  --> 3",
    ),
    "math.fmod": _doc(
        "math.fmod(x, y) -> number",
        "Returns the remainder of x divided by y, rounding the quotient "
        "toward zero (so the result has the sign of x, unlike the % "
        "operator).",
        "math.fmod(-7, 3)  --> -1",
    ),
    "math.huge": _doc(
        "math.huge",
        "The float value HUGE_VAL, i.e. positive infinity; -math.huge is "
        "negative infinity.",
        "math.huge > math.maxinteger  --> true",
    ),
    "math.log": _doc(
        "math.log(x [, base]) -> number",
        "Returns the logarithm of x in the given base; without base it is "
        "the natural logarithm.",
        "math.log(8, 2)  --> 3.0",
    ),
    "math.max": _doc(
        "math.max(x, ···) -> number",
        "Returns the largest of its arguments, compared with <.",
        "math.max(3, 9, 2)  --> 9",
    ),
    "math.maxinteger": _doc(
        "math.maxinteger",
        "The largest representable integer, 2^63 - 1. Integer arithmetic "
        "wraps around, so math.maxinteger + 1 == math.mininteger.",
    ),
    "math.min": _doc(
        "math.min(x, ···) -> number",
        "Returns the smallest of its arguments, compared with <.",
        "math.min(3, 9, 2)  --> 2",
    ),
    "math.mininteger": _doc(
        "math.mininteger",
        "The smallest representable integer, -2^63.",
    ),
    "math.modf": _doc(
        "math.modf(x) -> integral, fractional",
        "Splits x into its integral part and its fractional part; both parts "
        "carry the sign of x.",
        "math.modf(5.25)  --> 5  0.25",
    ),
    "math.pi": _doc(
        "math.pi",
        "The value of π as a float.",
        'string.format("%.4f", math.pi)  --> "3.1416"',
    ),
    "math.rad": _doc(
        "math.rad(x) -> number",
        "Converts the angle x from degrees to radians.",
        "math.rad(180)  --> 3.1415926535898",
    ),
    "math.random": _doc(
        "math.random([m [, n]]) -> number",
        "With no arguments returns a uniform float in [0, 1). With one "
        "argument m returns an integer in [1, m]; with two returns an "
        "integer in [m, n]. Uses the xoshiro256** generator; not suitable "
        "for cryptography.",
        "math.random(1, 6)  --> a die roll",
    ),
    "math.randomseed": _doc(
        "math.randomseed([x [, y]])",
        "Seeds the pseudo-random generator. Identical seeds give identical "
        "sequences, which helps make results reproducible; with no argument "
        "a roughly random seed is chosen.",
        "math.randomseed(42)",
    ),
    "math.sin": _doc(
        "math.sin(x) -> number",
        "Returns the sine of x, which is given in radians.",
    ),
    "math.sqrt": _doc(
        "math.sqrt(x) -> number",
        "Returns the square root of x as a float (x^0.5 gives the same).",
        "math.sqrt(16)  --> 4.0",
    ),
    "math.tan": _doc(
        "math.tan(x) -> number",
        "Returns the tangent of x, which is given in radians.",
    ),
    "math.tointeger": _doc(
        "math.tointeger(x) -> integer | nil",
        "Returns x as an integer if it is representable as one (e.g. the "
        "float 3.0), otherwise nil.",
        "math.tointeger(3.0)  --> 3",
    ),
    "math.type": _doc(
        "math.type(x) -> string | nil",
        'Returns "integer" or "float" depending on the subtype of the number '
        "x, or nil if x is not a number.",
        'math.type(1.0)  --> "float"',
    ),
    "math.ult": _doc(
        "math.ult(m, n) -> boolean",
        "Returns true if integer m is less than integer n when both are "
        "treated as unsigned 64-bit values.",
        "math.ult(1, -1)  --> true",
    ),
    # ------------------------------------------------------------------
    # utf8
    # ------------------------------------------------------------------
    "utf8": _doc(
        "utf8",
        "Basic UTF-8 support; strings are byte sequences and these functions "
        "interpret them as UTF-8. Available: char, charpattern, codepoint, "
        "codes, len, offset. Invalid byte sequences raise an error (or make "
        "len return nil) unless lax is set.",
    ),
    "utf8.char": _doc(
        "utf8.char(···) -> string",
        "Encodes each integer code point as UTF-8 and returns the "
        "concatenation.",
        'utf8.char(72, 228, 8364)  --> "Hä€"',
    ),
    "utf8.charpattern": _doc(
        "utf8.charpattern",
        'The pattern "[\\0-\\x7F\\xC2-\\xFD][\\x80-\\xBF]*", which matches '
        "exactly one UTF-8 byte sequence (assuming the subject is valid "
        "UTF-8).",
        'for ch in s:gmatch(utf8.charpattern) do print(ch) end',
    ),
    "utf8.codepoint": _doc(
        "utf8.codepoint(s [, i [, j [, lax]]]) -> integer, ···",
        "Returns the code points of all characters that start between byte "
        "positions i and j; i defaults to 1 and j to i (one character). "
        "Raises an error on invalid UTF-8.",
        'utf8.codepoint("hä", 1, -1)  --> 104  228',
    ),
    "utf8.codes": _doc(
        "utf8.codes(s [, lax]) -> function, s, 0",
        "Returns an iterator yielding the byte position and code point of "
        "every character in s. Raises an error on invalid UTF-8.",
        'for pos, cp in utf8.codes("hé") do print(pos, cp) end',
    ),
    "utf8.len": _doc(
        "utf8.len(s [, i [, j [, lax]]]) -> integer | nil, pos",
        "Counts the UTF-8 characters that start between byte positions i "
        "and j (default: the whole string). On invalid input it returns nil "
        "plus the position of the first bad byte.",
        'utf8.len("häh")  --> 3',
    ),
    "utf8.offset": _doc(
        "utf8.offset(s, n [, i]) -> integer | nil",
        "Returns the byte position where the n-th character (counted from "
        "byte position i) starts; negative n counts backwards. Useful for "
        "slicing strings by characters instead of bytes.",
        'utf8.offset("häh", 3)  --> 4',
    ),
    # ------------------------------------------------------------------
    # coroutine
    # ------------------------------------------------------------------
    "coroutine": _doc(
        "coroutine",
        "Cooperative threads that can suspend themselves with yield and be "
        "continued with resume. Available: close, create, isyieldable, "
        "resume, running, status, wrap, yield.",
    ),
    "coroutine.close": _doc(
        "coroutine.close(co) -> boolean [, err]",
        "Closes a suspended or dead coroutine, running any pending "
        "to-be-closed variables, and puts it in the dead state. Returns true, "
        "or false plus the error if the coroutine had failed.",
    ),
    "coroutine.create": _doc(
        "coroutine.create(f) -> thread",
        "Creates a new coroutine whose body is the function f and returns it "
        "in the suspended state; start it with coroutine.resume.",
        "local co = coroutine.create(function(a) print(a) end)",
    ),
    "coroutine.isyieldable": _doc(
        "coroutine.isyieldable([co]) -> boolean",
        "Returns true if the coroutine co (default: the running one) can "
        "yield, i.e. it is not the main thread and not inside a "
        "non-yieldable C function.",
    ),
    "coroutine.resume": _doc(
        "coroutine.resume(co [, val1, ···]) -> boolean, ···",
        "Starts or continues coroutine co. The first resume passes the "
        "values as arguments to its body; later ones make them the results "
        "of the pending yield. Returns true plus the yielded or returned "
        "values, or false plus an error message.",
        "local ok, v = coroutine.resume(co, 1)",
    ),
    "coroutine.running": _doc(
        "coroutine.running() -> thread, boolean",
        "Returns the running coroutine and a boolean that is true when it is "
        "the main thread.",
    ),
    "coroutine.status": _doc(
        "coroutine.status(co) -> string",
        'Returns the state of co: "running", "suspended" (yielded or not yet '
        'started), "normal" (active but has resumed another coroutine) or '
        '"dead" (finished or failed).',
        'coroutine.status(co)  --> "suspended"',
    ),
    "coroutine.wrap": _doc(
        "coroutine.wrap(f) -> function",
        "Creates a coroutine with body f and returns a function that resumes "
        "it on each call, returning the yielded values directly. Errors are "
        "propagated to the caller instead of being returned as false. Great "
        "for writing generators.",
        "local gen = coroutine.wrap(function() for i = 1, 3 do "
        "coroutine.yield(i) end end); print(gen(), gen())  --> 1  2",
    ),
    "coroutine.yield": _doc(
        "coroutine.yield(···) -> ···",
        "Suspends the running coroutine; its arguments become extra results "
        "of the resume that woke it. When the coroutine is resumed again, "
        "yield returns the values passed to that resume.",
    ),
    # ------------------------------------------------------------------
    # os
    # ------------------------------------------------------------------
    "os": _doc(
        "os",
        "Operating-system facilities, reduced in the aikit sandbox. "
        "Available: clock, date, difftime, time, getenv (policy-filtered), "
        "remove and rename (allowed paths only). os.exit, os.tmpname and "
        "os.execute are removed.",
    ),
    "os.clock": _doc(
        "os.clock() -> number",
        "Returns the CPU time used by the process, in seconds, as a float. "
        "Suitable for measuring elapsed computation time.",
        "local t0 = os.clock(); work(); print(os.clock() - t0)",
    ),
    "os.date": _doc(
        "os.date([format [, time]]) -> string | table",
        "Formats time (default: now) using strftime-style format codes. A "
        'format starting with "!" uses UTC; "*t" returns a table with year, '
        "month, day, hour, min, sec, wday, yday and isdst fields.",
        'os.date("!%Y-%m-%d", 0)  --> "1970-01-01"',
    ),
    "os.difftime": _doc(
        "os.difftime(t2, t1) -> number",
        "Returns the difference t2 - t1 in seconds, as a float, between two "
        "values obtained from os.time.",
        "os.difftime(10, 4)  --> 6.0",
    ),
    "os.getenv": _doc(
        "os.getenv(varname) -> string | nil",
        "Returns the value of the environment variable varname, or nil if "
        "it is not set. In aikit only variables allowed by the security "
        "policy are visible; any other name returns nil.",
        'os.getenv("HOME")',
    ),
    "os.remove": _doc(
        "os.remove(filename) -> true | nil, err",
        "Deletes a file (or empty directory). On failure returns nil plus "
        "an error message. In aikit it only works inside the paths allowed "
        "by the security policy.",
        'assert(os.remove("out.txt"))',
    ),
    "os.rename": _doc(
        "os.rename(oldname, newname) -> true | nil, err",
        "Renames or moves a file. On failure returns nil plus an error "
        "message. In aikit both paths must lie inside the paths allowed by "
        "the security policy.",
        'os.rename("draft.txt", "final.txt")',
    ),
    "os.time": _doc(
        "os.time([table]) -> integer",
        "Returns the current time as a number (seconds since the epoch on "
        "most systems). Given a table with year, month and day (and "
        "optionally hour, min, sec, isdst), returns that local time instead.",
        "os.time({year = 2024, month = 1, day = 1})",
    ),
    # ------------------------------------------------------------------
    # io
    # ------------------------------------------------------------------
    "io": _doc(
        "io",
        "Input/output, reduced in the aikit sandbox. Available: write, read "
        "(prompts the notebook user), lines, open, stdout, stderr, plus the "
        "file methods read, write, lines, close, seek, flush and setvbuf. "
        "Files can only be opened inside paths allowed by the security "
        "policy (by default the working directory and aikit's data "
        "directory).",
    ),
    "io.write": _doc(
        "io.write(···) -> file",
        "Writes each argument (strings or numbers) to the default output "
        "without adding separators or a newline, and returns the file.",
        'io.write("a", 1, "\\n")  --> a1',
    ),
    "io.read": _doc(
        "io.read(···) -> string | number | nil",
        'Reads from standard input in the given formats: "l" (line, the '
        'default), "L" (line with newline), "n" (number), "a" (all), or a '
        "byte count. In aikit it asks the notebook user for input when the "
        "frontend allows stdin.",
        'local name = io.read("l")',
    ),
    "io.lines": _doc(
        "io.lines([filename, ···]) -> function",
        "Opens filename and returns an iterator over its lines (or over the "
        "given formats); the file is closed when the loop ends. In aikit the "
        "file must be inside the paths the security policy allows (by "
        "default the working directory and aikit's data directory).",
        'for line in io.lines("data.txt") do print(line) end',
    ),
    "io.open": _doc(
        "io.open(filename [, mode]) -> file | nil, err",
        'Opens a file in mode "r" (default), "w", "a", "r+", "w+" or "a+" '
        '(add "b" for binary) and returns a file handle, or nil plus an '
        "error message. In aikit only paths allowed by the security policy "
        "can be opened (by default the working directory and aikit's data "
        "directory).",
        'local f = assert(io.open("notes.txt", "w"))',
    ),
    "io.stdout": _doc(
        "io.stdout",
        "The standard output file handle; in a notebook its text appears in "
        "the cell's output.",
        'io.stdout:write("done\\n")',
    ),
    "io.stderr": _doc(
        "io.stderr",
        "The standard error file handle, meant for diagnostics; notebooks "
        "usually show it separately (often highlighted).",
        'io.stderr:write("warning: empty input\\n")',
    ),
    # ------------------------------------------------------------------
    # file methods
    # ------------------------------------------------------------------
    "file:read": _doc(
        "file:read(···) -> string | number | nil",
        'Reads from the file in the given formats: "l" (next line, the '
        'default), "L" (line keeping the newline), "n" (a number), "a" (the '
        "rest of the file) or a byte count. Returns nil at end of file.",
        'local text = f:read("a")',
    ),
    "file:write": _doc(
        "file:write(···) -> file | nil, err",
        "Writes each string or number argument to the file and returns the "
        "file, so calls can be chained.",
        'f:write("x = ", 42, "\\n")',
    ),
    "file:lines": _doc(
        "file:lines(···) -> function",
        "Returns an iterator that reads the file with the given formats "
        '(default "l": line by line). Unlike io.lines it does not close the '
        "file when the loop ends.",
        "for line in f:lines() do print(line) end",
    ),
    "file:close": _doc(
        "file:close() -> true | nil, err",
        "Closes the file, flushing buffered output. Handles are also closed "
        "when garbage-collected, but closing explicitly is better.",
        "f:close()",
    ),
    "file:seek": _doc(
        "file:seek([whence [, offset]]) -> integer | nil, err",
        'Moves the file position to offset bytes from "set" (start), "cur" '
        '(current position, the default) or "end", and returns the new '
        "position measured from the start.",
        'local size = f:seek("end")',
    ),
    "file:flush": _doc(
        "file:flush() -> file | nil, err",
        "Writes any buffered data to the file immediately.",
        "f:flush()",
    ),
    "file:setvbuf": _doc(
        "file:setvbuf(mode [, size]) -> true | nil, err",
        'Sets the buffering mode: "no" (write immediately), "full" (write '
        'when the buffer is full or flushed) or "line" (write at each '
        "newline). size is the buffer size in bytes.",
        'io.stdout:setvbuf("no")',
    ),
}


KEYWORDS: dict[str, str] = {
    "and": "a and b  -- logical and: yields a if a is false or nil, otherwise b (b is evaluated only when needed)",
    "break": "break  -- exits the innermost enclosing while, repeat or for loop",
    "do": "do ... end  -- block with its own local scope; also opens the body of while and for loops",
    "else": "if cond then ... else ... end  -- branch run when no earlier if/elseif condition held",
    "elseif": "if c1 then ... elseif c2 then ... end  -- extra condition tested when the previous ones failed",
    "end": "end  -- closes a do, if, function, while or for block",
    "false": "false  -- the boolean false value; false and nil are the only falsy values",
    "for": "for i = first, last [, step] do ... end  |  for k, v in iterator do ... end  -- numeric or generic loop",
    "function": "function name(params) ... end  -- defines a function; function(...) ... end is an anonymous function expression",
    "goto": "goto label  -- jumps to a visible ::label:: in the same or an enclosing block",
    "if": "if cond then ... [elseif cond then ...] [else ...] end  -- conditional statement",
    "in": "for k, v in pairs(t) do ... end  -- separates the loop variables from the iterator expression",
    "local": "local name [<const|close>] [= exp]  -- declares a block-scoped variable; local function f() ... end for functions",
    "nil": "nil  -- the absence of a value; unassigned variables and missing table keys are nil",
    "not": "not exp  -- logical negation: true if exp is false or nil, otherwise false",
    "or": "a or b  -- logical or: yields a if it is neither false nor nil, otherwise b; idiom: x = x or default",
    "repeat": "repeat ... until cond  -- loop whose body runs at least once; cond can see the body's locals",
    "return": "return [exp, ...]  -- returns values from a function or chunk; must be the last statement of a block",
    "then": "if cond then ...  -- starts the body of an if or elseif branch",
    "true": "true  -- the boolean true value",
    "until": "repeat ... until cond  -- ends a repeat loop once cond is true",
    "while": "while cond do ... end  -- repeats the body as long as cond is neither false nor nil",
}


# Library tables for which "module:member" is accepted as "module.member".
_MODULES = frozenset({"string", "table", "math", "utf8", "coroutine", "os", "io"})


def lookup(name: str) -> str | None:
    """Return the doc for ``name`` or None.

    Accepts dotted names ("string.format"), the file-method names
    ("file:read"), module tables ("math"), keywords ("while"), and
    method syntax on a library name ("string:format" -> "string.format").
    Method calls on arbitrary variables ("s:upper") are not resolved.
    """
    if not isinstance(name, str):
        return None
    key = name.strip()
    if not key:
        return None
    doc = STDLIB_DOCS.get(key)
    if doc is not None:
        return doc
    if ":" in key:
        module, _, member = key.partition(":")
        if module in _MODULES and member and ":" not in member:
            return STDLIB_DOCS.get(f"{module}.{member}")
        return None
    return KEYWORDS.get(key)


if __name__ == "__main__":
    # Structure: signature line naming the entry, blank line, explanation.
    for entry, doc in STDLIB_DOCS.items():
        lines = doc.split("\n")
        assert entry in lines[0], (entry, lines[0])
        assert len(lines) >= 3 and lines[1] == "" and lines[2].strip(), entry
    for kw, summary in KEYWORDS.items():
        assert "\n" not in summary, kw
        assert kw in summary.split("--")[0], (kw, summary)

    # Things removed by the sandbox must not be documented (or completed).
    for removed in ("load", "loadfile", "dofile", "require", "string.dump",
                    "os.exit", "os.tmpname", "os.execute", "io.popen"):
        assert removed not in STDLIB_DOCS, removed

    # lookup() behaviour.
    assert lookup("string.format") == STDLIB_DOCS["string.format"]
    assert lookup("string:format") == STDLIB_DOCS["string.format"]
    assert lookup(" file:read ") == STDLIB_DOCS["file:read"]
    assert lookup("while") == KEYWORDS["while"]
    assert lookup("s:upper") is None
    assert lookup("string:nope") is None
    assert lookup("nope") is None and lookup("") is None

    # Coverage against a real Lua 5.4 (skipped if lupa is not installed).
    try:
        from lupa import lua54
    except ImportError:  # pragma: no cover
        print("lupa not available; coverage check skipped")
    else:
        rt = lua54.LuaRuntime()
        assert rt.eval("_VERSION") == "Lua 5.4"
        for module in ("string", "table", "math", "utf8", "coroutine"):
            names = set(rt.eval(
                f"(function() local r = {{}} for k in pairs({module}) do "
                f"r[#r + 1] = k end return table.concat(r, ' ') end)()"
            ).split())
            documented = {k.split(".", 1)[1] for k in STDLIB_DOCS
                          if k.startswith(module + ".")}
            expected = names - ({"dump"} if module == "string" else set())
            assert expected == documented, (module, expected ^ documented)
        # Documented os/io members and base names must exist in real Lua.
        for k in STDLIB_DOCS:
            if k.startswith(("os.", "io.")) or "." not in k and ":" not in k:
                assert rt.eval(k) is not None, k

    print(f"ok: {len(STDLIB_DOCS)} stdlib entries, {len(KEYWORDS)} keywords")
