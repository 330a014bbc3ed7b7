-- POST one image as the raw body: wrk ... -s post.lua URL -- IMAGE.jpeg
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*all"); f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "image/jpeg"
end
