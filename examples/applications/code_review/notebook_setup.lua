-- APP_MODEL, a TEST MODEL: the reviewers report the change's three problems and the fixer answers
-- with the patch a capable model would write for them (fixed text here: the app creates the same
-- repository every time).
local findings = {
  security = "- todo.py:26: os.system with a path from the caller runs shell commands; drop it, open() creates the file",
  correctness = "- todo.py:21: remove() documents a 1-based index but deletes ITEMS[index]; use index - 1 and check the range",
  style = "- todo.py:3: `import os` is only needed by the os.system call; remove both",
}
local fix = [==[
--- a/todo.py
+++ b/todo.py
@@ -1,6 +1,4 @@
 """A tiny to-do list kept in memory."""
-
-import os
 
 ITEMS = []
 
@@ -18,12 +16,13 @@
 
 def remove(index):
     """Remove the item at index (1-based, as shown to users)."""
-    del ITEMS[index]
+    if not 1 <= index <= len(ITEMS):
+        raise IndexError(f"no item {index}")
+    del ITEMS[index - 1]
 
 
 def export(path):
     """Write the list to a file, one item per line."""
-    os.system("touch " + path)
     with open(path, "w") as f:
         for item in ITEMS:
             f.write(item["text"] + "\n")
]==]
APP_MODEL = function(messages, tools)
  local system = messages[1].text
  for kind, text in pairs(findings) do
    if system:find("You are the " .. kind .. " reviewer", 1, true) then return text end
  end
  return "```diff\n" .. fix .. "```"
end
