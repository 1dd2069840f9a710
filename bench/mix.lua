-- wrk script of the production mix (bench/mix.py writes the files it reads; see bench/README.md).
-- init(args): users file (one "token<TAB>address" per line), variants file (a Lua chunk that
-- returns {head, tail, authenticated} per request variant), sequence file (one code per line:
-- user * VARIANTS + variant, both from 0, sampled in Python with a fixed seed), start offset.
-- Everything is built here, once; per request the work is two table lookups and one join.

local VARIANTS = 4096
local auth, xff, heads, tails, authed, users, variants = {}, {}, {}, {}, {}, {}, {}
local count, pos = 0, 0

init = function(args)
  for line in io.lines(args[1]) do
    local token, address = line:match("^([^\t]*)\t(.*)$")
    local n = #auth + 1
    auth[n] = "Authorization: Bearer " .. token .. "\r\n"
    xff[n] = "X-Forwarded-For: " .. address .. "\r\n"
  end
  for i, v in ipairs(dofile(args[2])) do
    heads[i], tails[i], authed[i] = v[1], v[2], v[3]
  end
  for line in io.lines(args[3]) do
    local code = tonumber(line)
    count = count + 1
    users[count] = math.floor(code / VARIANTS) + 1
    variants[count] = code % VARIANTS + 1
  end
  pos = tonumber(args[4] or "0") % count
end

request = function()
  pos = pos + 1
  if pos > count then
    pos = 1
  end
  local u, v = users[pos], variants[pos]
  if authed[v] then
    return heads[v] .. auth[u] .. xff[u] .. tails[v]
  end
  return heads[v] .. xff[u] .. tails[v]
end
