-- hello.lua: a first aikit script.  Run it with:  aikit run examples/hello.lua [name]
local name = arg[1] or "world"
print(("Hello, %s! This is %s running in aikit."):format(name, _VERSION))

-- Tables pretty-print with display(); in a terminal you get the text form.
local planets = {
  { name = "Mercury", moons = 0 },
  { name = "Earth", moons = 1 },
  { name = "Mars", moons = 2 },
}
display(planets)

-- Coroutines work as in plain Lua.
local function counter(n)
  return coroutine.wrap(function()
    for i = 1, n do coroutine.yield(i) end
  end)
end
local total = 0
for i in counter(10) do total = total + i end
print("sum of 1..10 =", total)

-- Errors are values you can catch; pcall reports them without stopping the script.
local ok, err = pcall(error, { code = "demo", message = "caught a structured error" })
print("pcall:", ok, err.code, err.message)
