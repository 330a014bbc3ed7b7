-- POST /v1/items (multipart image + metadata + category), a distinct image
-- every request: wrk ... -s add.lua URL -- LIST KEY
-- LIST holds one JPEG path a line; thread t of T sends lines t, t+T, ...
-- Counts 201s per thread; done() prints "adds201 N other M".
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local files, nfiles, i, key, boundary = {}, 0, 0, nil, "imgsimbenchboundary7d3f"
function init(args)
  local n = 0
  for line in io.lines(args[1]) do
    if n % (tonumber(args[3]) or 1) == tid then
      local f = assert(io.open(line, "rb"))
      nfiles = nfiles + 1
      files[nfiles] = f:read("*all"); f:close()
    end
    n = n + 1
  end
  key = args[2]
  ok, other = 0, 0
end

function request()
  i = i + 1
  local img = files[((i - 1) % nfiles) + 1]
  local body = "--" .. boundary .. "\r\n" ..
    "Content-Disposition: form-data; name=\"image\"; filename=\"v.jpeg\"\r\n" ..
    "Content-Type: image/jpeg\r\n\r\n" .. img .. "\r\n" ..
    "--" .. boundary .. "\r\n" ..
    "Content-Disposition: form-data; name=\"category\"\r\n\r\nBench\r\n" ..
    "--" .. boundary .. "\r\n" ..
    "Content-Disposition: form-data; name=\"metadata\"\r\n\r\n{\"bench\":" .. i .. "}\r\n" ..
    "--" .. boundary .. "--\r\n"
  local h = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
  if key and key ~= "" then h["Authorization"] = "Bearer " .. key end
  return wrk.format("POST", "/v1/items", h, body)
end

function response(status, headers, body)
  if status == 201 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local a, b = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("ok"); b = b + t:get("other") end
  io.write(string.format("adds201 %d other %d\n", a, b))
end
