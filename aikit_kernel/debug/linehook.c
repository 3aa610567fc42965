/* aikit's native line hook: the debugger's filter in front of Lua's debug-library hook.
 *
 * A Lua-level line hook costs 4-9x on call- and loop-heavy code because every line calls a Lua
 * function. This C hook is installed instead (with lua_sethook, on each running lua_State) and
 * forwards an event to the debug library's own hook (and so to the Lua hook function) only when
 * it could matter: the line carries a breakpoint (its number is marked, then its chunk's source
 * matches a file with breakpoints), or a step is pending and this line can end it. Measured overhead: about 1.9x (call-heavy) and 3x (loop-heavy).
 *
 * No Lua headers are needed: only the public head of lua_Debug (Lua 5.4 layout) is read, and
 * the Lua API functions used are handed in as pointers (lupa's module exports them).
 * The filter state is written by another thread (the debugger's control side) while Lua runs:
 * a stale read can only forward an extra event (the Lua side checks again) or miss a breakpoint
 * set in that same microsecond.
 */
typedef struct lua_State lua_State;

typedef struct lua_Debug {
  int event;
  const char *name, *namewhat, *what, *source;
  unsigned long srclen;
  int currentline;
  /* the rest is not read here; getstack writes into a separate, larger buffer */
} lua_Debug;

typedef void (*lua_Hook)(lua_State *L, lua_Debug *ar);
typedef int (*lua_GetStack)(lua_State *L, int level, lua_Debug *ar);
typedef int (*lua_GetInfo)(lua_State *L, const char *what, lua_Debug *ar);

#define LUA_HOOKRET 1
#define LUA_HOOKLINE 2
#define MAX_LINES (1 << 16)
#define MAX_SOURCES 256

enum { STEP_NONE = 0, STEP_IN = 1, STEP_OVER = 2, STEP_OUT = 3 };

unsigned char aikit_breakpoint_lines[MAX_LINES];  /* 1 where any file has a breakpoint */
lua_Hook aikit_forward = 0;                         /* the debug library's hook (ldblib hookf) */
lua_GetStack aikit_getstack = 0;
lua_GetInfo aikit_getinfo = 0;
const char *aikit_sources[MAX_SOURCES];             /* chunk names ("@path") with breakpoints */
unsigned long aikit_source_lengths[MAX_SOURCES];    /* their lengths (strlen) */
int aikit_source_count = 0;
int aikit_step_mode = STEP_NONE;
lua_State *aikit_step_state = 0;                    /* the thread a step over/out belongs to */
int aikit_step_depth = 0;                           /* its stack depth when the step began */

/* Number of active frames of L (O(depth log depth) with an exponential then binary search). */
int aikit_stack_depth(lua_State *L) {
  union { char bytes[1024]; void *align; } ar;
  int lo = 0, hi = 1;
  while (aikit_getstack(L, hi, (lua_Debug *)&ar)) { lo = hi; hi *= 2; }
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    if (aikit_getstack(L, mid, (lua_Debug *)&ar)) lo = mid; else hi = mid;
  }
  return hi;
}

static int has_breakpoint(lua_State *L, lua_Debug *ar, int line) {
  if (line < 0 || line >= MAX_LINES || !aikit_breakpoint_lines[line]) return 0;
  if (!aikit_getinfo(L, "S", ar) || !ar->source) return 1;
  int n = aikit_source_count;
  if (n <= 0) return 1;  /* too many files to filter (or being updated): let Lua decide */
  /* Lengths first, then from the end: cell files share a long directory prefix and differ in
   * the name at the end, so a line of another file is told apart in a comparison or two. */
  unsigned long length = ar->srclen;
  for (int i = 0; i < n && i < MAX_SOURCES; i++) {
    const char *a = aikit_sources[i], *b = ar->source;
    if (!a || aikit_source_lengths[i] != length) continue;
    unsigned long k = length;
    while (k > 0 && a[k - 1] == b[k - 1]) k--;
    if (k == 0) return 1;
  }
  return 0;
}

void aikit_line_hook(lua_State *L, lua_Debug *ar) {
  if (ar->event == LUA_HOOKRET) {
    /* Installed only while stepping over/out: the stepped function returning ends the step in
     * its caller (whose current line may produce no new line event, `return f(x) + g(y)`). */
    if ((aikit_step_mode == STEP_OVER || aikit_step_mode == STEP_OUT) && L == aikit_step_state &&
        aikit_step_depth > 1 && aikit_stack_depth(L) == aikit_step_depth)
      aikit_forward(L, ar);
    return;
  }
  if (ar->event != LUA_HOOKLINE) {  /* count events: an interrupt or a pause request */
    aikit_forward(L, ar);
    return;
  }
  if (has_breakpoint(L, ar, ar->currentline)) {
    aikit_forward(L, ar);
    return;
  }
  switch (aikit_step_mode) {
    case STEP_IN:
      aikit_forward(L, ar);
      break;
    case STEP_OVER:
      if (L != aikit_step_state || aikit_stack_depth(L) <= aikit_step_depth) aikit_forward(L, ar);
      break;
    case STEP_OUT:
      if (L != aikit_step_state || aikit_stack_depth(L) < aikit_step_depth) aikit_forward(L, ar);
      break;
  }
}
