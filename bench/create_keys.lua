-- bench/create_keys.lua: creates keys through POST /v1/keys with wrk, for bench/standalone.sh.
--   wrk -t1 -cP -dMAXs -s bench/create_keys.lua URL -- COUNT TOKEN_FILE LABEL_PREFIX
-- Use one wrk thread (-t1): the counters live in that thread's Lua state. The number of parallel
-- requests is the connection count (-c). wrk exits as soon as COUNT keys were created (os.exit:
-- wrk.thread:stop() would leave wrk's main thread asleep until -d runs out; up to P-1 requests
-- still in flight complete in the daemon), when over 5% fail, or when -d runs out. Progress goes to
-- stdout every 5%, then
--   SIGNET_KEYS created=N failed=N

-- Globals, not locals: done() reads created/failed from each thread with thread:get().
target, issued, created, failed, step, started = 0, 0, 0, 0, 1, 0
prefix = "bench-"

local function read_first_line(path)
    local f = assert(io.open(path, "r"), "cannot read " .. path)
    local line = f:read("*l")
    f:close()
    return line
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
    target = tonumber(args[1])
    assert(target and args[2], "usage: -- COUNT TOKEN_FILE [LABEL_PREFIX]")
    prefix = args[3] or prefix
    step = math.max(1, math.floor(target / 20))
    started = os.time()
    last_time = started
    wrk.method = "POST"
    wrk.path = "/v1/keys"
    wrk.headers["Authorization"] = "Bearer " .. read_first_line(args[2])
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    issued = issued + 1
    return wrk.format(nil, nil, nil,
        '{"algorithm":"ecdsa-p256","label":"' .. prefix .. issued .. '"}')
end

last_count, last_time = 0, 0

function response(status, headers, body)
    if status == 201 then
        created = created + 1
        if created % step == 0 or created == target then
            local now = os.time()
            local recent = (created - last_count) / math.max(1, now - last_time)
            io.write(string.format("  keys: %d/%d created, %d s, now ~%.0f keys/s\n", created,
                                   target, now - started, recent))
            io.flush()
            last_count, last_time = created, now
        end
    else
        failed = failed + 1
        if failed <= 3 then
            io.write(string.format("  keys: HTTP %d: %s\n", status, string.sub(body or "", 1, 300)))
            io.flush()
        end
    end
    -- Concurrent C_GenerateKeyPair on SoftHSM's file store fails now and then (CKR_GENERAL_ERROR,
    -- CKR_TEMPLATE_INCONSISTENT): tolerate that, but not a daemon that only fails.
    if created >= target or (failed > 20 and failed * 20 > created) then
        io.write(string.format("SIGNET_KEYS created=%d failed=%d\n", created, failed))
        io.flush()
        os.exit(0)
    end
end

function done(summary, latency, requests)
    local c, f = 0, 0
    for _, t in ipairs(threads) do
        c = c + (t:get("created") or 0)
        f = f + (t:get("failed") or 0)
    end
    io.write(string.format("SIGNET_KEYS created=%d failed=%d\n", c, f))
end
