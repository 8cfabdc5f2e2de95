-- bench/sign.lua: wrk request script for bench/standalone.sh.
--   wrk ... -s bench/sign.lua URL -- MODE TOKEN_FILE KEY_ID [BATCH]
-- MODE: sign (32-byte hex digest), nonce (the same with "nonce": true) or batch (BATCH digests,
-- default 256, to /sign-batch). The body is built once in init(), so wrk sends a static request
-- and the Lua VM stays out of the request loop. done() prints one machine-readable line:
--   SIGNET_RESULT requests=N duration_us=N non2xx=N connect=N read=N write=N timeout=N
--                 p50_us=N p90_us=N p99_us=N max_us=N
-- (latency is from writing a request to reading its whole response).

local function random_hex(bytes)
    local t = {}
    for i = 1, bytes do t[i] = string.format("%02x", math.random(0, 255)) end
    return table.concat(t)
end

local function read_first_line(path)
    local f = assert(io.open(path, "r"), "cannot read " .. path)
    local line = f:read("*l")
    f:close()
    return line
end

function init(args)
    local mode, token_file, key = args[1], args[2], args[3]
    local batch = tonumber(args[4] or "256")
    assert(mode and token_file and key, "usage: -- MODE TOKEN_FILE KEY_ID [BATCH]")
    math.randomseed(os.time())
    wrk.method = "POST"
    wrk.headers["Authorization"] = "Bearer " .. read_first_line(token_file)
    wrk.headers["Content-Type"] = "application/json"
    if mode == "sign" then
        wrk.path = "/v1/keys/" .. key .. "/sign"
        wrk.body = '{"digest":"' .. random_hex(32) .. '"}'
    elseif mode == "nonce" then
        wrk.path = "/v1/keys/" .. key .. "/sign"
        wrk.body = '{"digest":"' .. random_hex(32) .. '","nonce":true}'
    elseif mode == "batch" then
        local digests = {}
        for i = 1, batch do digests[i] = '"' .. random_hex(32) .. '"' end
        wrk.path = "/v1/keys/" .. key .. "/sign-batch"
        wrk.body = '{"digests":[' .. table.concat(digests, ",") .. ']}'
    else
        error("unknown mode " .. mode .. " (sign, nonce, batch)")
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "SIGNET_RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
        "p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
        summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
