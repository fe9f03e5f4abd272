-- The example upstream: answers every request with what it received, as JSON.
--
--   {"message": "hello from the example upstream", "method": "PUT", "path": "/api/items?x=1",
--    "peer": "172.18.0.3", "headers": {"host": "...", "origin": "...", ...}, "body": "..."}
--
-- `headers`: every request header but the pseudo-headers (`:authority` is reported as `host`), names
-- lower case, repeated names joined with ", ". `peer`: the address the request came from, i.e.
-- the proxy in front of this upstream.
--
-- The query sets the answer: `status=N` its status, each `h=Name:Value` one response header
-- (`h=vary:accept-encoding` makes the upstream send its own Vary). Without `h=x-exposed:...` and
-- `h=x-secret:...`, the answer carries an `x-exposed` header (the example policy exposes it to the
-- page) and an `x-secret` one (not exposed).

local function json_string(s)
  local escaped = s:gsub('[%c"\\]', function(c)
    if c == '"' then
      return '\\"'
    elseif c == "\\" then
      return "\\\\"
    end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. escaped .. '"'
end

local function url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- Response headers asked for in the query, in order; nil when the query has none of them.
local function answer_from_query(path)
  local status = "200"
  local headers = {}
  local query = path:match("%?(.*)$")
  if query == nil then
    return status, headers
  end
  for pair in query:gmatch("[^&]+") do
    local key, value = pair:match("^([^=]*)=?(.*)$")
    value = url_decode(value)
    if key == "status" and value:match("^[1-5]%d%d$") then
      status = value
    elseif key == "h" then
      local name, header_value = value:match("^%s*([^:%s]+)%s*:%s*(.-)%s*$")
      if name ~= nil then
        headers[#headers + 1] = { name:lower(), header_value }
      end
    end
  end
  return status, headers
end

function envoy_on_request(request_handle)
  local request = request_handle:headers()
  local method = request:get(":method") or ""
  local path = request:get(":path") or ""

  local names = {}
  local values = {}
  for name, value in pairs(request) do
    if name == ":authority" then
      name = "host"
    end
    if name:sub(1, 1) ~= ":" then
      if values[name] == nil then
        names[#names + 1] = name
        values[name] = value
      else
        values[name] = values[name] .. ", " .. value
      end
    end
  end
  local fields = {}
  for _, name in ipairs(names) do
    fields[#fields + 1] = json_string(name) .. ": " .. json_string(values[name])
  end

  local request_id = request:get("x-request-id")
  local peer = request_handle:streamInfo():downstreamDirectRemoteAddress() or ""
  peer = peer:gsub(":%d+$", ""):gsub("^%[(.*)%]$", "%1")

  -- Reading the body suspends the script: the request's headers are read before.
  local body = ""
  local buffered = request_handle:body()
  if buffered ~= nil then
    body = buffered:getBytes(0, buffered:length())
  end

  local json = "{"
    .. '"message": "hello from the example upstream", '
    .. '"method": ' .. json_string(method) .. ", "
    .. '"path": ' .. json_string(path) .. ", "
    .. '"peer": ' .. json_string(peer) .. ", "
    .. '"headers": {' .. table.concat(fields, ", ") .. "}, "
    .. '"body": ' .. json_string(body)
    .. "}\n"

  local status, extra = answer_from_query(path)
  local response = {
    [":status"] = status,
    ["content-type"] = "application/json",
    ["x-exposed"] = "readable by the page",
    ["x-secret"] = "not exposed to the page",
  }
  if request_id ~= nil then
    response["x-request-id"] = request_id
  end
  for _, header in ipairs(extra) do
    response[header[1]] = header[2]
  end
  request_handle:respond(response, method == "HEAD" and "" or json)
end
