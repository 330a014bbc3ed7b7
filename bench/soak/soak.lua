-- The soak mix (bench/soak/run.sh): wrk -s soak.lua URL -- IDS PHOTOS KEY SEG THREADS [ADDS]
--   90% GET /v1/items/{id}/similar?k=10, id drawn from IDS (one id a line)
--    9% POST /v1/search?k=10, a photo of PHOTOS (one path a line) as raw body
--    1% POST /v1/items, multipart, a photo made distinct by a JPEG comment
--       segment "soak SEG THREAD N" after its APP0 (same pixels, new bytes);
--       ADDS per mille (default 10) of the requests, similar the rest of 91%
-- done() prints one line: "soak seg=.. requests=.. p50_ms=.. p99_ms=.. ..."
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local ids, photos, key, seg = {}, {}, nil, 0
local boundary = "imgsimsoakboundary51c2"

-- offset (1-based) after SOI and a leading APP0 segment
local function insert_at(img)
  if img:byte(3) == 0xFF and img:byte(4) == 0xE0 then
    return 5 + img:byte(5) * 256 + img:byte(6)
  end
  return 3
end

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  for line in io.lines(args[2]) do
    local f = assert(io.open(line, "rb"))
    photos[#photos + 1] = f:read("*all"); f:close()
  end
  key, seg = args[3], tonumber(args[4]) or 0
  adds_pm = tonumber(args[6]) or 10
  segno = seg -- a global: done() runs in another Lua state and reads it from a thread
  math.randomseed(seg * 7919 + tid * 104729 + os.time())
  n_sim, n_search, n_adds = 0, 0, 0
  s2xx, s4xx, s5xx, s503, add201 = 0, 0, 0, 0, 0
end

function request()
  local r = math.random(1000)
  if r <= 910 - adds_pm then
    n_sim = n_sim + 1
    return wrk.format("GET", "/v1/items/" .. ids[math.random(#ids)] .. "/similar?k=10")
  elseif r <= 1000 - adds_pm then
    n_search = n_search + 1
    return wrk.format("POST", "/v1/search?k=10", { ["Content-Type"] = "image/jpeg" },
      photos[math.random(#photos)])
  end
  n_adds = n_adds + 1
  local img = photos[math.random(#photos)]
  local at = insert_at(img)
  local text = string.format("soak %d %d %d", seg, tid, n_adds)
  local com = string.char(0xFF, 0xFE, 0, #text + 2) .. text
  local body = "--" .. boundary .. "\r\n" ..
    "Content-Disposition: form-data; name=\"image\"; filename=\"s.jpeg\"\r\n" ..
    "Content-Type: image/jpeg\r\n\r\n" .. img:sub(1, at - 1) .. com .. img:sub(at) .. "\r\n" ..
    "--" .. boundary .. "\r\n" ..
    "Content-Disposition: form-data; name=\"category\"\r\n\r\nSoak\r\n" ..
    "--" .. boundary .. "--\r\n"
  return wrk.format("POST", "/v1/items", {
    ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
    ["Authorization"] = "Bearer " .. key }, body)
end

-- counts by status (kinds are counted as sent: wrk does not say which
-- connection, hence which request, a response belongs to)
function response(status, headers, body)
  if status == 201 then add201 = add201 + 1 end
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status >= 500 then s5xx = s5xx + 1; if status == 503 then s503 = s503 + 1 end
  else s4xx = s4xx + 1 end
end

function done(summary, latency, requests)
  local t = { n_sim = 0, n_search = 0, n_adds = 0, s2xx = 0, s4xx = 0, s5xx = 0, s503 = 0,
              add201 = 0 }
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  local e = summary.errors
  io.write(string.format(
    "soak seg=%d requests=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.1f sock_connect=%d sock_read=%d " ..
    "sock_write=%d timeouts=%d status_ge400=%d s2xx=%d s4xx=%d s5xx=%d s503=%d similar=%d " ..
    "search=%d adds=%d add201=%d\n",
    threads[1]:get("segno"), summary.requests, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect, e.read, e.write, e.timeout, e.status, t.s2xx, t.s4xx, t.s5xx,
    t.s503, t.n_sim, t.n_search, t.n_adds, t.add201))
end
