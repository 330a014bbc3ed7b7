-- A closed loop of similar-by-id reads with one upload in ten (POST
-- /v1/search, raw JPEG body): wrk -c128 ... -s mixed.lua URL -- IMAGE.jpeg ID
-- Every connection sends its 10th, 20th, ... request as the upload.
-- done() prints "status <code> <count>" per status seen, over all threads.
local threads = {}
function setup(thread) table.insert(threads, thread) end

local body, path, n = nil, nil, 0
function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*all"); f:close()
  path = "/v1/items/" .. (args[2] or "1") .. "/similar?k=10"
  counts = {}
end

function request()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("POST", "/v1/search?k=10", {["Content-Type"] = "image/jpeg"}, body)
  end
  return wrk.format("GET", path)
end

function response(status, headers, b)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do all[k] = (all[k] or 0) + v end
  end
  for k, v in pairs(all) do io.write(string.format("status %d %d\n", k, v)) end
end
