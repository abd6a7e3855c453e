-- Claims due jobs for one worker (worker/runtime/claim.py), making ARQ's checks for every id at once.
-- KEYS[1]: the queue. ARGV: now (ms), in-progress lifetime (ms), most jobs to claim, the in-progress
-- key prefix, the job key prefix, the size from which a job body is large, most large jobs to claim,
-- then the job ids in queue order. Returns the claimed ids, their scores and 1 for a large job (else 0),
-- in turn.
local claimed = {}
local room = tonumber(ARGV[3])
local large_room = tonumber(ARGV[7])
for i = 8, #ARGV do
    if room <= 0 then break end
    local job_id = ARGV[i]
    local in_progress = ARGV[4] .. job_id
    if redis.call('EXISTS', in_progress) == 0 then
        local score = redis.call('ZSCORE', KEYS[1], job_id)
        if score and tonumber(score) <= tonumber(ARGV[1]) then
            local large = 0
            if redis.call('STRLEN', ARGV[5] .. job_id) >= tonumber(ARGV[6]) then large = 1 end
            if large == 0 or large_room > 0 then
                redis.call('PSETEX', in_progress, ARGV[2], '1')
                claimed[#claimed + 1] = job_id
                claimed[#claimed + 1] = score
                claimed[#claimed + 1] = large
                room = room - 1
                large_room = large_room - large
            end
        end
    end
end
return claimed
