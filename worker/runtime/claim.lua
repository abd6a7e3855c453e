-- Claims due jobs for one worker (worker/runtime/claim.py), making ARQ's checks for every id at once.
-- KEYS[1]: the queue. ARGV: now (ms), in-progress lifetime (ms), most jobs to claim, the in-progress
-- key prefix, the job key prefix, the size from which a job body is large, most large jobs to claim,
-- most sealed-password jobs to claim, then the job ids in queue order. Returns two lists: the claimed
-- ids, their scores, 1 for a large job (else 0) and 1 for a sealed-password job (else 0), in turn; and
-- the sealed-password jobs left queued for want of room.
local claimed = {}
local waiting = {}
local room = tonumber(ARGV[3])
local large_room = tonumber(ARGV[7])
local hashing_room = tonumber(ARGV[8])
for i = 9, #ARGV do
    if room <= 0 then break end
    local job_id = ARGV[i]
    local in_progress = ARGV[4] .. job_id
    if redis.call('EXISTS', in_progress) == 0 then
        local score = redis.call('ZSCORE', KEYS[1], job_id)
        if score and tonumber(score) <= tonumber(ARGV[1]) then
            local large = 0
            local hashing = 0
            if redis.call('STRLEN', ARGV[5] .. job_id) >= tonumber(ARGV[6]) then
                large = 1
            else  -- a password to hash: the argument password_sealed set to a string (not null)
                local body = redis.call('GET', ARGV[5] .. job_id)
                if body and string.find(body, '"password_sealed"%s*:%s*"') then hashing = 1 end
            end
            if (large == 0 or large_room > 0) and (hashing == 0 or hashing_room > 0) then
                redis.call('PSETEX', in_progress, ARGV[2], '1')
                claimed[#claimed + 1] = job_id
                claimed[#claimed + 1] = score
                claimed[#claimed + 1] = large
                claimed[#claimed + 1] = hashing
                room = room - 1
                large_room = large_room - large
                hashing_room = hashing_room - hashing
            elseif hashing == 1 then
                waiting[#waiting + 1] = job_id
            end
        end
    end
end
return {claimed, waiting}
