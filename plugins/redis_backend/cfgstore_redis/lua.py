"""Lua scripts. Each runs atomically on the server; none decodes JSON (Lua's cjson turns
``[]`` into ``{}`` and truncates long numbers): JSON is built and read by the client, and
scripts only move strings and numbers.

Every script that changes data ends the same way: ``INCR`` the namespace revision and
``PUBLISH`` one change message (``ARGV`` carries the message up to its ``"rev":`` and the
script appends the revision). The ``#!lua`` shebang makes Redis refuse a writing script
as a whole when it is out of memory, instead of failing halfway.
"""

from __future__ import annotations

SHEBANG = "#!lua\n"

# Node-state helpers shared by the scripts that change hot fields. A hot field absent from
# the hash is absent from the document and has its load default.
NODE_PRELUDE = r"""
local SEP = '\31'
local HOT = {'isHealthy','isDisabled','usageCount','errorCount','lastUsed','lastErrorTime',
  'lastErrorMessage','lastHealthCheckTime','lastHealthCheckModel','scheduledRecoveryTime',
  'needsRefresh','refreshCount','lastRefreshTime','_lastSelectionSeq'}
local DEFAULT = {isHealthy='true', isDisabled='false', usageCount='0', errorCount='0',
  needsRefresh='false', refreshCount='0', _lastSelectionSeq='0'}
local READ = {}
for i, name in ipairs(HOT) do READ[i] = name end
READ[#HOT + 1] = '@layout'
READ[#HOT + 2] = '@errms'

local N = {}

-- A node in memory: st = JSON text of each hot field that has a value, present = which
-- hot fields the document has (a field of the hash), layout = the @layout string.
function N.load(key)
  local values = redis.call('HMGET', key, unpack(READ))
  local layout = values[#HOT + 1]
  if not layout then return nil end
  local node = {key = key, st = {}, present = {}, dirty = {}, layout = layout,
                layout_dirty = false, errms = values[#HOT + 2], errms_dirty = false}
  for i, name in ipairs(HOT) do
    if values[i] then
      node.st[name] = values[i]
      node.present[name] = true
    end
  end
  node.was_healthy = N.get(node, 'isHealthy')
  return node
end

function N.get(node, name)
  return node.st[name] or DEFAULT[name] or 'null'
end

-- Assign a value; the key joins the document only through ensure, or at save when the
-- value is not the default (as the Python model serialises it).
function N.set(node, name, value)
  node.st[name] = value
  node.dirty[name] = true
end

-- Add keys to the document in this order (the order the Node service assigns them).
function N.ensure(node, ...)
  for _, name in ipairs({...}) do
    if not node.present[name] then
      node.present[name] = true
      node.st[name] = N.get(node, name)
      node.dirty[name] = true
      node.layout = node.layout .. SEP .. name
      node.layout_dirty = true
    end
  end
end

function N.set_error_time(node, json_value, ms)
  N.set(node, 'lastErrorTime', json_value)
  node.errms = ms
  node.errms_dirty = true
end

-- Write what changed; return 1 when anything did.
function N.save(node)
  local args = {}
  for _, name in ipairs(HOT) do
    if node.dirty[name] then
      local value = node.st[name]
      if not node.present[name] and value ~= (DEFAULT[name] or 'null') then
        node.present[name] = true
        node.layout = node.layout .. SEP .. name
        node.layout_dirty = true
      end
      if node.present[name] then
        args[#args + 1] = name
        args[#args + 1] = value
      end
    end
  end
  if node.layout_dirty then
    args[#args + 1] = '@layout'
    args[#args + 1] = node.layout
  end
  if node.errms_dirty then
    if node.errms then
      args[#args + 1] = '@errms'
      args[#args + 1] = node.errms
    else
      redis.call('HDEL', node.key, '@errms')
    end
  end
  if #args == 0 and not node.errms_dirty then return 0 end
  if #args > 0 then redis.call('HSET', node.key, unpack(args)) end
  redis.call('HINCRBY', node.key, '@ver', 1)
  return 1
end

function N.mark_healthy(node, at_ms, at_iso)
  N.set(node, 'isHealthy', 'true')
  N.set(node, 'errorCount', '0')
  N.set(node, 'refreshCount', '0')
  N.set(node, 'needsRefresh', 'false')
  N.set(node, 'lastRefreshTime', at_ms)
  N.set_error_time(node, 'null', false)
  N.set(node, 'lastErrorMessage', 'null')
  N.set(node, '_lastSelectionSeq', '0')
  N.set(node, 'lastUsed', at_iso)
  N.ensure(node, 'isHealthy', 'errorCount', 'refreshCount', 'needsRefresh', 'lastRefreshTime',
    'lastErrorTime', 'lastErrorMessage', '_lastSelectionSeq', 'usageCount', 'lastUsed')
end

function N.mark_failed(node, at_ms, at_iso, message, max_errors, immediate)
  local count
  if immediate == '1' then
    N.set(node, 'errorCount', tostring(max_errors))
    N.set(node, 'isHealthy', 'false')
    N.ensure(node, 'isHealthy', 'needsRefresh', 'refreshCount', 'errorCount')
  else
    local previous = node.errms
    if N.get(node, 'lastErrorTime') == 'null' or
       (previous and previous ~= 'nan' and tonumber(at_ms) - tonumber(previous) > 10000) then
      count = 1
    else
      count = tonumber(N.get(node, 'errorCount')) + 1
    end
    N.set(node, 'errorCount', tostring(count))
    if max_errors > 0 and count >= max_errors then N.set(node, 'isHealthy', 'false') end
  end
  N.set_error_time(node, at_iso, at_ms)
  N.set(node, 'lastUsed', at_iso)
  N.set(node, 'needsRefresh', 'false')
  N.set(node, 'refreshCount', '0')
  if message ~= '' then N.set(node, 'lastErrorMessage', message) end
  N.ensure(node, 'errorCount', 'lastErrorTime', 'lastUsed', 'needsRefresh', 'refreshCount',
    'lastErrorMessage')
  if N.get(node, 'isHealthy') == 'false' then N.ensure(node, 'isHealthy') end
end

local function finish(revision_key, channel, message_head)
  local revision = redis.call('INCR', revision_key)
  redis.call('PUBLISH', channel, message_head .. revision .. '}')
  return revision
end
"""

# Credential links shared by the scripts that add, change or remove nodes. A credential is
# one hash per token file; its ``users`` field names the nodes naming that file
# ('<type>:<uuid>' joined by \x1f), so a node's credential is found through its ``@cred``
# and removed only with the last node naming the file.
CRED_PRELUDE = r"""
local C = {}

function C.members(record)
  local list = {}
  local users = redis.call('HGET', record, 'users')
  if users then
    for member in string.gmatch(users, '[^\31]+') do list[#list + 1] = member end
  end
  return list
end

-- Sibling folders (schema 3): a Kiro credential's 'folder' field is '<folder>\31<name>':
-- its sibling files are those of the hash {p}:folder:<folder> but <name>; the folder counts
-- the credentials referencing it in '@refs' and goes with the last one.
function C.folder_key(record, ref)
  return string.match(record, '^{[^}]*}') .. ':folder:' .. string.match(ref, '^[^\31]*')
end

function C.unref(record)
  local ref = redis.call('HGET', record, 'folder')
  if not ref then return end
  redis.call('HDEL', record, 'folder')
  local key = C.folder_key(record, ref)
  if redis.call('HINCRBY', key, '@refs', -1) <= 0 then redis.call('DEL', key) end
end

function C.ref(record, ref)
  C.unref(record)
  redis.call('HSET', record, 'folder', ref)
  redis.call('HINCRBY', C.folder_key(record, ref), '@refs', 1)
end

-- Store the member list; the last member gone, the credential goes with it.
function C.store(record, list)
  if #list == 0 then
    C.unref(record)
    redis.call('DEL', record)
  else
    redis.call('HSET', record, 'users', table.concat(list, '\31'))
  end
end

function C.join(record, member)
  local list = C.members(record)
  for _, m in ipairs(list) do
    if m == member then return end
  end
  list[#list + 1] = member
  C.store(record, list)
end

function C.leave(record, member)
  local kept = {}
  for _, m in ipairs(C.members(record)) do
    if m ~= member then kept[#kept + 1] = m end
  end
  C.store(record, kept)
end

function C.rename(record, old, new)
  local list = C.members(record)
  for i, m in ipairs(list) do
    if m == old then list[i] = new end
  end
  C.store(record, list)
end

-- A node re-pointed from file ``old`` to file ``new`` (keys; '' = none). Its credential
-- follows it to a file that holds none yet (version: the revision this script's change
-- will get, so versions are never reused across files), then it leaves the old file.
function C.relink(base, member, old, new, source, revision_key)
  if old == new then return end
  if new ~= '' then
    local target = base .. new
    if old ~= '' and redis.call('HEXISTS', target, 'doc') == 0 then
      local from = redis.call('HMGET', base .. old, 'doc', 'format', 'siblings', 'folder')
      if from[1] then
        local version = tonumber(redis.call('GET', revision_key) or '0') + 1
        redis.call('HSET', target, 'doc', from[1], 'ver', version, 'source', source)
        if from[2] then redis.call('HSET', target, 'format', from[2]) end
        if from[3] then redis.call('HSET', target, 'siblings', from[3]) end
        if from[4] then C.ref(target, from[4]) end
      end
    end
    C.join(target, member)
  end
  if old ~= '' then C.leave(base .. old, member) end
end
"""

# The batch marks (cfgstore.model.batch_ids): in the marks hash, field <instance> holds
# '<epoch>:<seq>' per epoch with a mark, joined by spaces (one, once the instance dropped
# its earlier runs' marks). M.read returns them ({epoch, seq, text} each; {} for none), or
# nil when the field holds anything else. M.split(key, instance, epoch) returns the seq
# marked for that epoch (0: none) and the other epochs' mark texts, nil when malformed;
# M.mark(key, instance, kept, epoch, seq) writes those texts plus '<epoch>:<seq>'. Every
# exactly-once batch (records, traffic, usage statistics) checks and marks with these.
MARKS_PRELUDE = r"""
local M = {}

function M.read(key, instance)
  local raw = redis.call('HGET', key, instance) or ''
  local marks, texts = {}, {}
  for text in string.gmatch(raw, '%S+') do
    local e, s = string.match(text, '^(%d+):(%d+)$')
    if not e then return nil end
    marks[#marks + 1] = {epoch = tonumber(e), seq = tonumber(s), text = text}
    texts[#texts + 1] = text
  end
  if table.concat(texts, ' ') ~= raw then return nil end
  return marks
end

function M.malformed(key, instance)
  return 'batch marks of ' .. instance .. ' in ' .. key .. ' are not <epoch>:<seq> ' ..
    'joined by spaces: ' .. tostring(redis.call('HGET', key, instance))
end

function M.split(key, instance, epoch)
  local marks = M.read(key, instance)
  if not marks then return nil end
  local kept, current = {}, 0
  for _, mark in ipairs(marks) do
    if mark.epoch == epoch then current = mark.seq else kept[#kept + 1] = mark.text end
  end
  return current, kept
end

function M.mark(key, instance, kept, epoch, seq)
  kept[#kept + 1] = epoch .. ':' .. seq
  redis.call('HSET', key, instance, table.concat(kept, ' '))
end
"""

# KEYS: [1] batch marks hash (a legacy id: its operation-id key), [2] revision, [3] meta.
# ARGV: instance, epoch, seq, after (a legacy id: '', its ttl ms, 0, 0), channel, message
# head, expected namespace id ('' = any), node-key prefix ('{p}:node:'), forwarding-key
# prefix ('{p}:fwd:'), then the records as one text of fields each ended by \x1f
# (cfgstore_redis.batch): per node its type, uuid and op count, then the ops (code and
# arguments). A node's keys are the prefixes plus '<type>:<uuid>', all in the namespace's
# hash slot (undeclared, as the nodes IMPORT_POOLS writes: one argument per node key made
# the client's command packing cost more than the rest of the batch).
# A batch is applied only when seq is above its instance's mark for its epoch, which then
# becomes seq (cfgstore.model.batch_ids; see MARKS_PRELUDE); a legacy id only when its key
# is new. Replies {'ok', revision, key, healthy, ...} (health transitions), {'dup'} when
# the batch was applied before (or a later one of its instance and epoch was),
# {'behind', mark} when after > 0 and the mark is below it (the batch before this one in
# the pipeline was refused: nothing applied), {'namespace', actual id} when the namespace
# is not the expected one (emptied or replaced: nothing applied, nothing recorded).
APPLY_RECORDS = (
    SHEBANG
    + NODE_PRELUDE
    + MARKS_PRELUDE
    + r"""
if ARGV[7] ~= '' then
  local namespace = redis.call('HGET', KEYS[3], 'namespace')
  if namespace ~= ARGV[7] then
    return {'namespace', namespace or ''}
  end
end
if ARGV[1] == '' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then return {'dup'} end
else
  local current, kept = M.split(KEYS[1], ARGV[1], tonumber(ARGV[2]))
  if not current then return redis.error_reply(M.malformed(KEYS[1], ARGV[1])) end
  if tonumber(ARGV[3]) <= current then return {'dup'} end
  if current < tonumber(ARGV[4]) then return {'behind', current} end
  M.mark(KEYS[1], ARGV[1], kept, ARGV[2], ARGV[3])
end
local F, nf = {}, 0
for field in string.gmatch(ARGV[10], '([^\31]*)\31') do
  nf = nf + 1
  F[nf] = field
end
local NODE, FWD = ARGV[8], ARGV[9]
local argi = 1
local transitions = {}
while argi <= nf do
  local node_prefix = NODE .. F[argi] .. ':'
  local fwd_prefix = FWD .. F[argi] .. ':'
  local count = tonumber(F[argi + 2])
  local key = node_prefix .. F[argi + 1]
  local fwd_key = fwd_prefix .. F[argi + 1]
  argi = argi + 3
  local node = N.load(key)
  local hops = 0
  while node == nil and hops < 8 do  -- renamed: follow the forwarding pointer
    local new_uuid = redis.call('GET', fwd_key)
    if not new_uuid then break end
    key = node_prefix .. new_uuid
    fwd_key = fwd_prefix .. new_uuid
    node = N.load(key)
    hops = hops + 1
  end
  for _ = 1, count do
    local code = F[argi]
    if code == 'S' then
      if node then
        N.set(node, 'lastUsed', F[argi + 1]); N.set(node, '_lastSelectionSeq', F[argi + 2])
        N.ensure(node, 'lastUsed', '_lastSelectionSeq')
      end
      argi = argi + 3
    elseif code == 'U' then
      if node then
        N.mark_healthy(node, F[argi + 2], F[argi + 3])
        N.set(node, 'usageCount',
          tostring(tonumber(N.get(node, 'usageCount')) + tonumber(F[argi + 1])))
      end
      argi = argi + 4
    elseif code == 'F' then
      if node then
        N.mark_failed(node, F[argi + 1], F[argi + 2], F[argi + 3],
          tonumber(F[argi + 4]), F[argi + 5])
      end
      argi = argi + 6
    elseif code == 'C' then
      if node then
        N.set(node, 'isHealthy', 'false'); N.set(node, 'errorCount', F[argi + 4])
        N.set(node, 'needsRefresh', 'false'); N.set(node, 'refreshCount', '0')
        N.set_error_time(node, F[argi + 2], F[argi + 1])
        N.set(node, 'lastUsed', F[argi + 2]); N.set(node, 'lastErrorMessage', F[argi + 3])
        N.set(node, 'scheduledRecoveryTime', F[argi + 5])
        N.ensure(node, 'isHealthy', 'needsRefresh', 'refreshCount', 'errorCount',
          'lastErrorTime', 'lastUsed', 'lastErrorMessage', 'scheduledRecoveryTime')
      end
      argi = argi + 6
    elseif code == 'N' then
      if node then
        local last = tonumber(N.get(node, 'lastRefreshTime'))
        if last == nil or tonumber(F[argi + 1]) - last >= 30000 then
          N.set(node, 'needsRefresh', 'true'); N.ensure(node, 'needsRefresh')
        end
      end
      argi = argi + 2
    elseif code == 'R' then
      if node and N.get(node, 'isHealthy') ~= 'true' then
        N.set(node, 'isHealthy', 'true'); N.set(node, 'errorCount', '0')
        N.set_error_time(node, 'null', false); N.set(node, 'lastErrorMessage', 'null')
        N.set(node, 'scheduledRecoveryTime', 'null')
        N.ensure(node, 'isHealthy', 'errorCount', 'lastErrorTime', 'lastErrorMessage',
          'scheduledRecoveryTime')
      end
      argi = argi + 1
    elseif code == 'H' then
      if node then
        local at_ms, at_iso = F[argi + 1], F[argi + 2]
        if F[argi + 3] == '1' then
          N.mark_healthy(node, at_ms, at_iso)
          if F[argi + 8] == '1' then
            N.set(node, 'usageCount', '0')
          else
            N.set(node, 'usageCount', tostring(tonumber(N.get(node, 'usageCount')) + 1))
          end
        else
          N.mark_failed(node, at_ms, at_iso, F[argi + 5], tonumber(F[argi + 6]),
            F[argi + 7])
        end
        N.set(node, 'lastHealthCheckTime', at_iso); N.ensure(node, 'lastHealthCheckTime')
        if F[argi + 4] ~= '' then
          N.set(node, 'lastHealthCheckModel', F[argi + 4])
          N.ensure(node, 'lastHealthCheckModel')
        end
      end
      argi = argi + 9
    else
      return redis.error_reply('unknown record code ' .. tostring(code))
    end
  end
  if node then
    N.save(node)
    local healthy = N.get(node, 'isHealthy')
    if healthy ~= node.was_healthy then
      transitions[#transitions + 1] = key
      transitions[#transitions + 1] = healthy
    end
  end
end
local revision = finish(KEYS[2], ARGV[5], ARGV[6])
return {'ok', revision, unpack(transitions)}
"""
)

# Drop an instance's batch marks of every epoch but one (its earlier runs left nothing to
# send). KEYS: marks hash. ARGV: instance, epoch kept. Marks are nobody's cached state: no
# revision, no change message. Returns how many marks went.
FORGET_EPOCHS = (
    SHEBANG
    + MARKS_PRELUDE
    + r"""
local marks = M.read(KEYS[1], ARGV[1])
if not marks then return redis.error_reply(M.malformed(KEYS[1], ARGV[1])) end
local kept
for _, mark in ipairs(marks) do
  if mark.epoch == tonumber(ARGV[2]) then kept = mark.text end
end
local dropped = #marks - (kept and 1 or 0)
if dropped == 0 then return 0 end
if kept then
  redis.call('HSET', KEYS[1], ARGV[1], kept)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return dropped
"""
)

# Add one batch of traffic counts (cfgstore.model.traffic), exactly once per batch id.
# KEYS: [1] batch marks hash, then one minute hash per minute. ARGV: instance, epoch, seq,
# then per minute: expire-at ms, field count, then field/increment pairs. A batch at or
# below its writer's mark for its epoch is a duplicate ({'dup'}: nothing added). Counters
# are nobody's cached state: no revision, no change message. Replies {'ok'}.
TRAFFIC_ADD = (
    SHEBANG
    + MARKS_PRELUDE
    + r"""
local current, kept = M.split(KEYS[1], ARGV[1], tonumber(ARGV[2]))
if not current then return redis.error_reply(M.malformed(KEYS[1], ARGV[1])) end
if tonumber(ARGV[3]) <= current then return {'dup'} end
M.mark(KEYS[1], ARGV[1], kept, ARGV[2], ARGV[3])
local argi = 4
for k = 2, #KEYS do
  local expire_at = ARGV[argi]; local fields = tonumber(ARGV[argi + 1])
  argi = argi + 2
  for _ = 1, fields do
    redis.call('HINCRBY', KEYS[k], ARGV[argi], ARGV[argi + 1])
    argi = argi + 2
  end
  redis.call('PEXPIREAT', KEYS[k], expire_at)
end
return {'ok'}
"""
)

# KEYS: types, nodes list, node key, revision. ARGV: channel, head, type, uuid,
# credential-key base, fields… (``@cred`` among them: the node joins its file's credential).
ADD_NODE = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('LPOS', KEYS[2], ARGV[4]) then
  return {'exists'}
end
if not redis.call('LPOS', KEYS[1], ARGV[3]) then redis.call('RPUSH', KEYS[1], ARGV[3]) end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('HSET', KEYS[3], '@ver', 1, '@docver', 1)
local cred = redis.call('HGET', KEYS[3], '@cred')
if cred and cred ~= '' then C.join(ARGV[5] .. cred, ARGV[3] .. ':' .. ARGV[4]) end
return {'ok', finish(KEYS[4], ARGV[1], ARGV[2])}
"""
)

# KEYS: node key, revision. ARGV: channel, head, expected @docver, credential-key base,
# '<type>:<uuid>', the node's new token path string ('' = none), fields… (``@cred``
# among them: a changed file relinks the node's credential, see C.relink).
UPDATE_NODE = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
local current = redis.call('HGET', KEYS[1], '@docver')
if not current then return {'notfound'} end
if current ~= ARGV[3] then return {'conflict'} end
local old_cred = redis.call('HGET', KEYS[1], '@cred') or ''
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
local new_cred = redis.call('HGET', KEYS[1], '@cred') or ''
C.relink(ARGV[4], ARGV[5], old_cred, new_cred, ARGV[6], KEYS[2])
redis.call('HINCRBY', KEYS[1], '@docver', 1)
redis.call('HINCRBY', KEYS[1], '@ver', 1)
return {'ok', finish(KEYS[2], ARGV[1], ARGV[2])}
"""
)

# KEYS: types, nodes list, node key, revision. ARGV: channel, head, type, uuid,
# credential-key base. The node leaves its file's credential (which goes with the last).
DELETE_NODE = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
if redis.call('LREM', KEYS[2], 0, ARGV[4]) == 0 then return {'notfound'} end
local cred = redis.call('HGET', KEYS[3], '@cred')
redis.call('DEL', KEYS[3])
if cred and cred ~= '' then C.leave(ARGV[5] .. cred, ARGV[3] .. ':' .. ARGV[4]) end
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('LREM', KEYS[1], 0, ARGV[3]) end
return {'ok', finish(KEYS[4], ARGV[1], ARGV[2])}
"""
)

# KEYS: nodes list, old node, new node, forwarding key of the old uuid, revision.
# ARGV: channel, head, old uuid, new uuid, ttl, type, credential-key base.
# The credential stays with the file; only its member name changes.
RENAME_NODE = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
local index = redis.call('LPOS', KEYS[1], ARGV[3])
if not index then return {'notfound'} end
if redis.call('LPOS', KEYS[1], ARGV[4]) or redis.call('EXISTS', KEYS[3]) == 1 then
  return {'exists'}
end
redis.call('LSET', KEYS[1], index, ARGV[4])
redis.call('RENAME', KEYS[2], KEYS[3])
redis.call('HINCRBY', KEYS[3], '@ver', 1)
local cred = redis.call('HGET', KEYS[3], '@cred')
if cred and cred ~= '' then
  C.rename(ARGV[7] .. cred, ARGV[6] .. ':' .. ARGV[3], ARGV[6] .. ':' .. ARGV[4])
end
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
return {'ok', finish(KEYS[5], ARGV[1], ARGV[2])}
"""
)

# KEYS: types, nodes list, revision. ARGV: channel, head, type, node-key prefix,
# credential-key base.
DELETE_TYPE = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
if not redis.call('LPOS', KEYS[1], ARGV[3]) then return {'notfound'} end
local uuids = redis.call('LRANGE', KEYS[2], 0, -1)
for _, uuid in ipairs(uuids) do
  local cred = redis.call('HGET', ARGV[4] .. uuid, '@cred')
  redis.call('DEL', ARGV[4] .. uuid)
  if cred and cred ~= '' then C.leave(ARGV[5] .. cred, ARGV[3] .. ':' .. uuid) end
end
redis.call('DEL', KEYS[2])
redis.call('LREM', KEYS[1], 0, ARGV[3])
return {'ok', finish(KEYS[3], ARGV[1], ARGV[2]), #uuids}
"""
)

# KEYS: node key, revision. ARGV: channel, head, 'true'|'false'.
SET_DISABLED = (
    SHEBANG
    + NODE_PRELUDE
    + r"""
local node = N.load(KEYS[1])
if not node then return {'notfound'} end
N.set(node, 'isDisabled', ARGV[3]); N.ensure(node, 'isDisabled')
N.save(node)
return {'ok', finish(KEYS[2], ARGV[1], ARGV[2])}
"""
)

# KEYS: types, nodes list, revision. ARGV: channel, head, type, node-key prefix, mode,
# credential-key base. mode 'reset': resetAllHealthInType; mode 'drop': delete the
# unhealthy nodes (they leave their files' credentials).
TYPE_HEALTH = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
if not redis.call('LPOS', KEYS[1], ARGV[3]) then return {'notfound'} end
local uuids = redis.call('LRANGE', KEYS[2], 0, -1)
local result = {'ok', 0}
for _, uuid in ipairs(uuids) do
  local node = N.load(ARGV[4] .. uuid)
  if node then
    if ARGV[5] == 'reset' then
      N.set(node, 'isHealthy', 'true'); N.set(node, 'errorCount', '0')
      N.set_error_time(node, 'null', false); N.set(node, 'lastErrorMessage', 'null')
      N.set(node, 'refreshCount', '0'); N.set(node, 'needsRefresh', 'false')
      N.save(node)
      result[#result + 1] = uuid
    elseif N.get(node, 'isHealthy') == 'false' then
      redis.call('LREM', KEYS[2], 0, uuid)
      local cred = redis.call('HGET', node.key, '@cred')
      redis.call('DEL', node.key)
      if cred and cred ~= '' then C.leave(ARGV[6] .. cred, ARGV[3] .. ':' .. uuid) end
      result[#result + 1] = uuid
    end
  end
end
if redis.call('LLEN', KEYS[2]) == 0 and ARGV[5] == 'drop' then
  redis.call('LREM', KEYS[1], 0, ARGV[3])
end
result[2] = finish(KEYS[3], ARGV[1], ARGV[2])
return result
"""
)

# A versioned document in a hash (fields doc, ver). KEYS: key, revision.
# ARGV: channel, head, expected version ('*' any, '0' absent), document.
CAS_DOCUMENT = (
    SHEBANG
    + r"""
local current = redis.call('HGET', KEYS[1], 'ver') or '0'
if ARGV[3] ~= '*' and ARGV[3] ~= current then return {'conflict', current} end
redis.call('HSET', KEYS[1], 'doc', ARGV[4])
local version = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local revision = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. revision .. '}')
return {'ok', tostring(version)}
"""
)

# A credential write through one node. KEYS: node, credential, revision[, sibling folder].
# ARGV: channel, head, expected version, document, source path, format, (unused: '', the
# schema-2 siblings JSON), the node's file key (the credential key's suffix), the members
# the head names, the folder reference ('<folder>\31<own name>'; '' keeps the siblings),
# the folder's expected '@ver', the head of a change message naming no ids (sent instead
# when the folder's files change: other credentials see them too), the number n of
# sibling files to set, n (name, document JSON) pairs, then the names of files to remove.
# Replies {'notfound'}; {'moved', @cred} when the node names another file now;
# {'members', users} when other nodes share the file than the head names (the change
# message must name them all); {'conflict', version}; {'folder', @ver} when the folder is
# not at the expected version (the client reads it again); {'ok', version, folder @ver,
# 1 when the folder's files changed, 1 when the written file's copy in it was set}. The
# version is the write's revision: never reused, for this file or another. The tokens of a
# folder are each other's siblings (the Node service reads the folder's files at every
# load): a credential referencing a folder, with or without siblings in the write, sets
# its own file's copy there to the document written when the folder holds one or other
# credentials reference the folder (a token alone in its folder costs no copy).
CAS_CREDENTIAL = (
    SHEBANG
    + CRED_PRELUDE
    + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local cred = redis.call('HGET', KEYS[1], '@cred') or ''
if cred ~= ARGV[8] then return {'moved', cred} end
local users = redis.call('HGET', KEYS[2], 'users') or ''
if users ~= ARGV[9] then return {'members', users} end
local current = redis.call('HGET', KEYS[2], 'ver') or '0'
if ARGV[3] ~= '*' and ARGV[3] ~= current then return {'conflict', current} end
local fver = '0'
if ARGV[10] ~= '' then
  fver = redis.call('HGET', KEYS[4], '@ver') or '0'
  if fver ~= ARGV[11] then return {'folder', fver} end
end
local revision = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'doc', ARGV[4], 'format', ARGV[6], 'source', ARGV[5], 'ver', revision)
local changed = 0
if ARGV[10] ~= '' then
  redis.call('HDEL', KEYS[2], 'siblings')
  local n = tonumber(ARGV[13])
  for i = 0, n - 1 do
    redis.call('HSET', KEYS[4], ARGV[14 + 2 * i], ARGV[15 + 2 * i])
    changed = 1
  end
  for i = 14 + 2 * n, #ARGV do
    changed = math.max(changed, redis.call('HDEL', KEYS[4], ARGV[i]))
  end
  if redis.call('HGET', KEYS[2], 'folder') ~= ARGV[10] then C.ref(KEYS[2], ARGV[10]) end
end
-- The written file is a sibling of the folder's other tokens: their copy of it is this.
local own = 0
local ref = redis.call('HGET', KEYS[2], 'folder')
if ref then
  local folder = C.folder_key(KEYS[2], ref)
  local name = string.match(ref, '\31(.*)$')
  local held = redis.call('HGET', folder, name)
  if held ~= ARGV[4] and (held or tonumber(redis.call('HGET', folder, '@refs') or '0') > 1) then
    redis.call('HSET', folder, name, ARGV[4])
    changed, own = 1, 1
  end
  if changed == 1 then fver = tostring(redis.call('HINCRBY', folder, '@ver', 1)) end
end
local head = ARGV[2]
if changed == 1 then head = ARGV[12] end
redis.call('PUBLISH', ARGV[1], head .. revision .. '}')
return {'ok', tostring(revision), fver, changed, own}
"""
)

# Delete a credential through one node (its members keep naming the file). KEYS: node,
# credential, revision. ARGV: channel, head, file key, members (as CAS_CREDENTIAL), the
# head of a change message naming no ids (sent instead when the file leaves its folder:
# the folder's other tokens had it as a sibling). Replies {'moved', @cred},
# {'members', users}, {'ok', 1|0 (whether one existed), 1|0 (whether the folder changed)}.
DELETE_CREDENTIAL = (
    SHEBANG
    + CRED_PRELUDE
    + r"""
local cred = redis.call('HGET', KEYS[1], '@cred') or ''
if cred ~= ARGV[3] then return {'moved', cred} end
local users = redis.call('HGET', KEYS[2], 'users') or ''
if users ~= ARGV[4] then return {'members', users} end
local dropped = 0
local ref = redis.call('HGET', KEYS[2], 'folder')
if ref then
  local folder = C.folder_key(KEYS[2], ref)
  dropped = redis.call('HDEL', folder, string.match(ref, '\31(.*)$'))
  if dropped == 1 then redis.call('HINCRBY', folder, '@ver', 1) end
end
C.unref(KEYS[2])
local existed = redis.call('HDEL', KEYS[2], 'doc', 'ver', 'source', 'format', 'siblings')
if existed == 0 and dropped == 0 then return {'ok', 0, 0} end
local revision = redis.call('INCR', KEYS[3])
local head = ARGV[2]
if dropped == 1 then head = ARGV[5] end
redis.call('PUBLISH', ARGV[1], head .. revision .. '}')
return {'ok', existed, dropped}
"""
)

# Take a refresh lock: the lock of the file the node names, else the node's own.
# KEYS: node. ARGV: lock base, '<type>:<uuid>', token, ttl ms. Returns the lock key, or
# false when it is held.
LOCK_CREDENTIAL = (
    SHEBANG
    + r"""
local cred = redis.call('HGET', KEYS[1], '@cred')
local key = ARGV[1] .. 'node:' .. ARGV[2]
if cred and cred ~= '' then key = ARGV[1] .. 'file:' .. cred end
if redis.call('SET', key, ARGV[3], 'NX', 'PX', ARGV[4]) then return key end
return false
"""
)

# Set a plain value and announce it. KEYS: key, revision. ARGV: channel, head, value.
SET_VALUE = (
    SHEBANG
    + r"""
redis.call('SET', KEYS[1], ARGV[3])
local revision = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. revision .. '}')
return revision
"""
)

# Delete keys and announce it. KEYS: revision, keys… ARGV: channel, head. Returns count.
DELETE_KEYS = (
    SHEBANG
    + r"""
local removed = redis.call('DEL', unpack(KEYS, 2))
if removed > 0 then
  local revision = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. revision .. '}')
end
return removed
"""
)

# One provider type's usage-cache entry. KEYS: usage hash, revision.
# ARGV: channel, head, type, entry JSON, timestamp.
USAGE_PUT_TYPE = (
    SHEBANG
    + r"""
local field = 't:' .. ARGV[3]
if redis.call('HEXISTS', KEYS[1], field) == 0 then
  local order = redis.call('HGET', KEYS[1], '@order')
  if order and order ~= '' then order = order .. '\31' .. ARGV[3] else order = ARGV[3] end
  redis.call('HSET', KEYS[1], '@order', order)
end
redis.call('HSET', KEYS[1], field, ARGV[4], '@timestamp', ARGV[5])
local revision = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. revision .. '}')
return revision
"""
)

# Replace a whole hash. KEYS: hash, revision. ARGV: channel, head, fields…
REPLACE_HASH = (
    SHEBANG
    + r"""
redis.call('DEL', KEYS[1])
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
local revision = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. revision .. '}')
return revision
"""
)

# Compare-and-delete of a lock. KEYS: lock. ARGV: token.
RELEASE_LOCK = (
    SHEBANG
    + r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)

# The admin-login value of KEYS[1] (cfgstore.model.login_guard.LoginFailures):
# 'failures:expires_ms:locked_until_ms[:last_attempt_ms]' (0: none), kept with a PX TTL, so
# the key goes when its count does. login_state(now) returns failures, locked_until and
# last_attempt of a count alive at now, zeros otherwise. Login scripts only GET and SET:
# no revision, no change message (login counts are nobody's cached state).
LOGIN_PRELUDE = r"""
local function login_state(now)
  local raw = redis.call('GET', KEYS[1])
  if raw then
    local f, e, l, a = string.match(raw, '^(%d+):(%d+):(%d+):?(%d*)$')
    if f and now < tonumber(e) then return tonumber(f), tonumber(l), tonumber(a) or 0 end
  end
  return 0, 0, 0
end
"""

# One failed admin login (cfgstore.model.login_guard.add_failure). KEYS: the client's
# login key. ARGV: now ms, max attempts (0: never lock), lockout ms. Returns {failures,
# locked_until_ms}.
LOGIN_FAILURE = (
    SHEBANG
    + LOGIN_PRELUDE
    + r"""
local now, max_attempts, lockout = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local failures, locked = login_state(now)
failures = failures + 1
if max_attempts > 0 and failures >= max_attempts then locked = now + lockout end
redis.call('SET', KEYS[1], string.format('%d:%d:%d', failures, now + lockout, locked),
  'PX', lockout)
return {failures, locked}
"""
)

# Reserve one admin login attempt (cfgstore.model.login_guard.reserve_attempt): the check
# and the count in one step. KEYS: the client's login key. ARGV: now ms, max attempts (0:
# never lock), lockout ms, min interval ms. Returns {'ok', failures, locked_until_ms} or a
# refusal that changes nothing: {'locked', failures, locked_until_ms} or
# {'too_frequent', failures, retry_at_ms}.
LOGIN_ATTEMPT = (
    SHEBANG
    + LOGIN_PRELUDE
    + r"""
local now, max_attempts = tonumber(ARGV[1]), tonumber(ARGV[2])
local lockout, min_interval = tonumber(ARGV[3]), tonumber(ARGV[4])
local failures, locked, last = login_state(now)
if locked > 0 then
  if now < locked then return {'locked', failures, locked} end
  failures, locked, last = 0, 0, 0
end
if last > 0 and now - last < min_interval then
  return {'too_frequent', failures, last + min_interval}
end
failures = failures + 1
if max_attempts > 0 and failures >= max_attempts then locked = now + lockout end
local ttl = math.max(lockout, min_interval)
redis.call('SET', KEYS[1], string.format('%d:%d:%d:%d', failures, now + ttl, locked, now),
  'PX', ttl)
return {'ok', failures, locked}
"""
)

# End every admin session but one. KEYS: the sessions index (digest scored by expiry).
# ARGV: session key prefix (the digest follows), digest to keep ('' : none). Sessions are
# nobody's cached state: no revision, no change message. Returns how many keys went.
DELETE_SESSIONS_EXCEPT = (
    SHEBANG
    + r"""
local removed = 0
for _, digest in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if digest ~= ARGV[2] then
    removed = removed + redis.call('DEL', ARGV[1] .. digest)
    redis.call('ZREM', KEYS[1], digest)
  end
end
return removed
"""
)

# Replace all pools. KEYS: types, revision. ARGV: channel, head, keep ('1'|'0'), nodes-list
# prefix, node-key base, credential-key base, type count, then per type: name, node
# count, then per node: uuid, field count, field/value pairs (``@cred`` among them).
# Credential links: every node joins its file first, then the nodes that are gone or name
# another file leave theirs, so a file named before and after keeps its credential.
IMPORT_POOLS = (
    SHEBANG
    + NODE_PRELUDE
    + CRED_PRELUDE
    + r"""
local keep = ARGV[3] == '1'
local lists, node_base, cred_base = ARGV[4], ARGV[5], ARGV[6]
local plan, wanted, i = {}, {}, 8
for t = 1, tonumber(ARGV[7]) do
  local entry = {name = ARGV[i], nodes = {}}
  local count = tonumber(ARGV[i + 1])
  i = i + 2
  for n = 1, count do
    local nf = tonumber(ARGV[i + 1])
    local node = {uuid = ARGV[i], first = i + 2, last = i + 1 + 2 * nf, cred = ''}
    for f = node.first, node.last, 2 do
      if ARGV[f] == '@cred' then node.cred = ARGV[f + 1] end
    end
    entry.nodes[n] = node
    wanted[entry.name .. ':' .. node.uuid] = node.cred
    i = i + 2 + 2 * nf
  end
  plan[t] = entry
end
local before = {}
for _, name in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  for _, uuid in ipairs(redis.call('LRANGE', lists .. name, 0, -1)) do
    local key = node_base .. name .. ':' .. uuid
    local cred = redis.call('HGET', key, '@cred')
    if cred and cred ~= '' then before[#before + 1] = {name .. ':' .. uuid, cred} end
    if not wanted[name .. ':' .. uuid] then redis.call('DEL', key) end
  end
  redis.call('DEL', lists .. name)
end
redis.call('DEL', KEYS[1])
for _, entry in ipairs(plan) do
  redis.call('RPUSH', KEYS[1], entry.name)
  for _, node in ipairs(entry.nodes) do
    local key = node_base .. entry.name .. ':' .. node.uuid
    if keep and redis.call('EXISTS', key) == 1 then
      -- Settings from the files; the stored hot-path state stays.
      for f = node.first, node.last, 2 do
        local field = ARGV[f]
        if field == '@doc' or field == '@layout' or field == '@cred' then
          redis.call('HSET', key, field, ARGV[f + 1])
        elseif string.sub(field, 1, 1) ~= '@' and redis.call('HEXISTS', key, field) == 0 then
          redis.call('HSET', key, field, DEFAULT[field] or 'null')
        end
      end
      redis.call('HINCRBY', key, '@docver', 1)
      redis.call('HINCRBY', key, '@ver', 1)
    else
      redis.call('DEL', key)
      if node.last >= node.first then
        redis.call('HSET', key, unpack(ARGV, node.first, node.last))
      end
      redis.call('HSET', key, '@ver', 1, '@docver', 1)
    end
    redis.call('RPUSH', lists .. entry.name, node.uuid)
    if node.cred ~= '' then C.join(cred_base .. node.cred, entry.name .. ':' .. node.uuid) end
  end
end
for _, link in ipairs(before) do
  if wanted[link[1]] ~= link[2] then C.leave(cred_base .. link[2], link[1]) end
end
return finish(KEYS[2], ARGV[1], ARGV[2])
"""
)

# Schema 1 → 2, one node (see cfgstore_redis.schema_ops): the node joins the file it names
# and, when it had a credential under the schema-1 key ``{p}:cred:<type>:<uuid>``, that
# credential becomes the file's ('take', at a fresh version: the revision) or is dropped
# for the one kept ('drop'); the old key goes. KEYS: node, old credential, file
# credential, revision. ARGV: credential-key base, '<type>:<uuid>', file key ('' = none),
# expected @docver, expected old 'ver' ('' = none), mode ('take'|'drop'|'link'), source.
# Replies {'changed'} (nothing done: the node or its old credential is not what the
# client read; it reads again) or {'ok', moved, dropped}.
UPGRADE_NODE = (
    SHEBANG
    + CRED_PRELUDE
    + r"""
local docver = redis.call('HGET', KEYS[1], '@docver')
if docver ~= ARGV[4] then return {'changed'} end
local old = redis.call('HMGET', KEYS[2], 'ver', 'doc', 'format', 'siblings')
if (old[1] or '') ~= ARGV[5] then return {'changed'} end
local cred = redis.call('HGET', KEYS[1], '@cred') or ''
if cred ~= ARGV[3] then
  C.relink(ARGV[1], ARGV[2], cred, ARGV[3], ARGV[7], KEYS[4])
  redis.call('HSET', KEYS[1], '@cred', ARGV[3])
end
if ARGV[3] ~= '' then C.join(KEYS[3], ARGV[2]) end
local moved, dropped = 0, 0
if old[2] then
  if ARGV[6] == 'take' then
    local revision = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[3], 'doc', old[2], 'ver', revision, 'source', ARGV[7])
    if old[3] then redis.call('HSET', KEYS[3], 'format', old[3]) end
    if old[4] then
      redis.call('HSET', KEYS[3], 'siblings', old[4])
    else
      redis.call('HDEL', KEYS[3], 'siblings')
    end
    moved = 1
  else
    dropped = 1
  end
end
if KEYS[2] ~= KEYS[3] and (old[1] or old[2]) then redis.call('DEL', KEYS[2]) end
return {'ok', moved, dropped}
"""
)

# Schema 2 → 3, one credential (see cfgstore_redis.schema_ops): its copy of the sibling
# files ('siblings', JSON) becomes a reference to its folder's files, stored once.
# KEYS: credential, folder. ARGV: the 'siblings' JSON read (compare-and-set), the folder
# reference, then (name, document JSON) pairs of files to set in the folder (those an
# earlier credential of this run did not set already). Replies {'changed'} (the field is
# not what the client read: it reads again) or {'ok'}.
UPGRADE_SIBLINGS = (
    SHEBANG
    + CRED_PRELUDE
    + r"""
if redis.call('HGET', KEYS[1], 'siblings') ~= ARGV[1] then return {'changed'} end
if #ARGV > 2 then
  for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  redis.call('HINCRBY', KEYS[2], '@ver', 1)
end
C.ref(KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[1], 'siblings')
return {'ok'}
"""
)

# The last step of an upgrade: the schema, while the upgrade lock is still this run's.
# KEYS: meta, upgrade lock, revision. ARGV: lock token, schema read, new schema, channel,
# then change-message heads (one per entity; all get this one revision).
# Replies {'lost'} (the lock expired: another run may be under way), {'schema', stored}
# (someone else changed it) or {'ok', revision}.
FINISH_UPGRADE = (
    SHEBANG
    + r"""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'lost'} end
local stored = redis.call('HGET', KEYS[1], 'schema') or ''
if stored ~= ARGV[2] then return {'schema', stored} end
redis.call('HSET', KEYS[1], 'schema', ARGV[3])
local revision = redis.call('INCR', KEYS[3])
for i = 5, #ARGV do redis.call('PUBLISH', ARGV[4], ARGV[i] .. revision .. '}') end
return {'ok', revision}
"""
)

# Model usage statistics (cfgstore.model.usage_stats): one hash of every scope's block
# (fields '<scope>\31<name>'; scopes 's', 'p\31<type>', 'm\31<type>\31<model>', 'd\31<day>'),
# a list of the scopes in the order first counted, the '@updatedAt' field. No JSON.
USAGE_PRELUDE = r"""
local U = {}
U.SUMS = {'requestCount', 'promptTokens', 'completionTokens', 'totalTokens', 'cachedTokens'}
U.PEAKS = {'maxQps', 'maxRpm', 'maxTps'}

-- Add a text number: HINCRBY; when either side is not an integer (a migrated file's odd
-- value), a double addition as JavaScript does it, kept with 17 digits (exact round trip).
function U.add(hash, field, by)
  if by == '0' then return end
  local reply = redis.pcall('HINCRBY', hash, field, by)
  if type(reply) == 'table' and reply.err then
    local held = tonumber(redis.call('HGET', hash, field) or '0') or 0
    redis.call('HSET', hash, field, string.format('%.17g', held + tonumber(by)))
  end
end

-- Keep the larger (numbers) or later (ISO text) value.
function U.max_number(hash, field, value)
  local v = tonumber(value)
  if not v or v <= 0 then return end
  local held = tonumber(redis.call('HGET', hash, field) or '0') or 0
  if v > held then redis.call('HSET', hash, field, value) end
end

function U.later(hash, field, value)
  if value == '' then return end
  local held = redis.call('HGET', hash, field)
  if not held or value > held then redis.call('HSET', hash, field, value) end
end
"""

# Add one batch of usage counts, exactly once per batch id. KEYS: [1] batch marks hash,
# [2] statistics hash, [3] scope order list. ARGV: instance, epoch, seq, updatedAt, then
# per scope: scope, the five sums, the three peaks, lastUsedAt ('' = none). A batch at or
# below its writer's mark for its epoch is a duplicate ({'dup'}: nothing added). Nobody's
# cached state: no revision, no change message. Replies {'ok'}.
USAGE_STATS_ADD = (
    SHEBANG
    + MARKS_PRELUDE
    + USAGE_PRELUDE
    + r"""
local current, kept = M.split(KEYS[1], ARGV[1], tonumber(ARGV[2]))
if not current then return redis.error_reply(M.malformed(KEYS[1], ARGV[1])) end
if tonumber(ARGV[3]) <= current then return {'dup'} end
M.mark(KEYS[1], ARGV[1], kept, ARGV[2], ARGV[3])
local H = KEYS[2]
local i = 5
while i <= #ARGV do
  local base = ARGV[i] .. '\31'
  if redis.call('HEXISTS', H, base .. 'requestCount') == 0 then
    redis.call('RPUSH', KEYS[3], ARGV[i])
    redis.call('HSET', H, base .. 'requestCount', 0)
  end
  for k, name in ipairs(U.SUMS) do U.add(H, base .. name, ARGV[i + k]) end
  for k, name in ipairs(U.PEAKS) do U.max_number(H, base .. name, ARGV[i + 5 + k]) end
  U.later(H, base .. 'lastUsedAt', ARGV[i + 9])
  i = i + 10
end
U.later(H, '@updatedAt', ARGV[4])
return {'ok'}
"""
)

# Zero every block's tokens and peaks (counts and lastUsedAt kept). KEYS: statistics hash.
# ARGV: updatedAt. Replies the number of fields dropped (absent reads as 0).
USAGE_STATS_RESET_TOKENS = (
    SHEBANG
    + r"""
local RESET = {promptTokens = true, completionTokens = true, totalTokens = true,
  cachedTokens = true, maxQps = true, maxRpm = true, maxTps = true}
local all = redis.call('HGETALL', KEYS[1])
local dropped = {}
for i = 1, #all, 2 do
  local name = string.match(all[i], '\31(%a+)$')
  if name and RESET[name] then dropped[#dropped + 1] = all[i] end
end
for i = 1, #dropped, 500 do
  redis.call('HDEL', KEYS[1], unpack(dropped, i, math.min(i + 499, #dropped)))
end
redis.call('HSET', KEYS[1], '@updatedAt', ARGV[1])
return #dropped
"""
)

# -- api-potluck keys (cfgstore_redis.potluck_ops): one hash per key, '@doc' the key's JSON
# skeleton (order, arrays), every scalar a field named by its JSON pointer holding JSON text;
# counters change by HINCRBY only. Key data is nobody's cached state: no revision, no message.
POTLUCK_PRELUDE = r"""
local P = {}
function P.truthy(v)
  return v and v ~= 'false' and v ~= 'null' and v ~= '0' and v ~= '""'
end
"""

# KEYS: key hash. ARGV: today (JSON text), now (JSON text), then the today-counter fields.
# Replies {verdict, used, limit}: 'ok' (counted), 'not_found', 'disabled', 'quota_exceeded'.
POTLUCK_ADMIT = (
    SHEBANG
    + POTLUCK_PRELUDE
    + r"""
local v = redis.call('HMGET', KEYS[1], '@doc', '/enabled', '/dailyLimit', '/todayUsage',
  '/lastResetDate')
if not v[1] then return {'not_found', 0, 0} end
local limit = tonumber(v[3] or '0') or 0
local used = tonumber(v[4] or '0') or 0
if not P.truthy(v[2]) then return {'disabled', used, limit} end
if v[5] ~= ARGV[1] then
  for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '0') end
  redis.call('HSET', KEYS[1], '/lastResetDate', ARGV[1])
  used = 0
end
if limit > 0 and used >= limit then return {'quota_exceeded', used, limit} end
redis.call('HINCRBY', KEYS[1], '/todayUsage', 1)
redis.call('HINCRBY', KEYS[1], '/totalUsage', 1)
redis.call('HSET', KEYS[1], '/lastUsedAt', ARGV[2])
return {'ok', used + 1, limit}
"""
)

# Token uses, exactly once per batch id. KEYS: [1] batch marks hash, then key hashes.
# ARGV: instance, epoch, seq, history days kept (a use opening a new day drops the
# oldest past it), then per use: key index (into KEYS), day (JSON text),
# field count and field/increment pairs (always), field count and pairs (only while the
# key's lastResetDate is the day), then peaks: field count and field/value pairs raised to
# the value (the key's: added when absent only above 0; the buckets': added when absent).
# Uses of absent keys are dropped. Replies {'ok'}/{'dup'}.
POTLUCK_TOKENS = (
    SHEBANG
    + MARKS_PRELUDE
    + r"""
local current, kept = M.split(KEYS[1], ARGV[1], tonumber(ARGV[2]))
if not current then return redis.error_reply(M.malformed(KEYS[1], ARGV[1])) end
if tonumber(ARGV[3]) <= current then return {'dup'} end
M.mark(KEYS[1], ARGV[1], kept, ARGV[2], ARGV[3])
local keep_days = tonumber(ARGV[4])
local function trim_history(key)
  local all = redis.call('HGETALL', key)
  local dates, seen = {}, {}
  for j = 1, #all, 2 do
    local d = string.match(all[j], '^/usageHistory/([^/]+)')
    if d and not seen[d] then seen[d] = true; dates[#dates + 1] = d end
  end
  if #dates <= keep_days then return end
  table.sort(dates)
  local drop = {}
  for j = 1, #dates - keep_days do drop[dates[j]] = true end
  for j = 1, #all, 2 do
    local d = string.match(all[j], '^/usageHistory/([^/]+)')
    if d and drop[d] then redis.call('HDEL', key, all[j]) end
  end
end
local i = 5
while i <= #ARGV do
  local key = KEYS[tonumber(ARGV[i])]
  local day = ARGV[i + 1]
  local exists = redis.call('HEXISTS', key, '@doc') == 1
  local same_day = exists and redis.call('HGET', key, '/lastResetDate') == day
  local history = '/usageHistory/' .. string.sub(day, 2, -2)
  local new_day = exists and redis.call('HEXISTS', key, history .. '/summary/requestCount') == 0
    and redis.call('HEXISTS', key, history .. '/summary') == 0
  i = i + 2
  for pass = 1, 2 do
    local n = tonumber(ARGV[i])
    i = i + 1
    for _ = 1, n do
      if exists and (pass == 1 or same_day) then
        redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
      end
      i = i + 2
    end
  end
  for pass = 1, 2 do
    local n = tonumber(ARGV[i])
    i = i + 1
    for _ = 1, n do
      if exists then
        local current = redis.call('HGET', key, ARGV[i])
        local value = tonumber(ARGV[i + 1])
        if current then
          local number = tonumber(current)
          if not number or number < value then redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
        elseif pass == 2 or value > 0 then
          redis.call('HSET', key, ARGV[i], ARGV[i + 1])
        end
      end
      i = i + 2
    end
  end
  if new_day then trim_history(key) end
end
return {'ok'}
"""
)

# KEYS: index list, key hash. ARGV: id, skeleton, then field/value pairs. {'exists'}/{'ok'}.
POTLUCK_CREATE = (
    SHEBANG
    + r"""
if redis.call('EXISTS', KEYS[2]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[2], '@doc', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('RPUSH', KEYS[1], ARGV[1])
return {'ok'}
"""
)

# KEYS: key hash. ARGV: field/value pairs set when the key exists. {'not_found'}/{'ok'}.
POTLUCK_UPDATE = (
    SHEBANG
    + r"""
if redis.call('HEXISTS', KEYS[1], '@doc') == 0 then return {'not_found'} end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {'ok'}
"""
)

# KEYS: key hash. Flips '/enabled'. {'not_found'}/{'ok'}.
POTLUCK_TOGGLE = (
    SHEBANG
    + POTLUCK_PRELUDE
    + r"""
if redis.call('HEXISTS', KEYS[1], '@doc') == 0 then return {'not_found'} end
if P.truthy(redis.call('HGET', KEYS[1], '/enabled')) then
  redis.call('HSET', KEYS[1], '/enabled', 'false')
else
  redis.call('HSET', KEYS[1], '/enabled', 'true')
end
return {'ok'}
"""
)

# KEYS: index list. ARGV: key-hash prefix, limit (JSON text). Replies {keys, changed}.
POTLUCK_APPLY_LIMIT = (
    SHEBANG
    + r"""
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local changed = 0
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  if redis.call('HGET', key, '/dailyLimit') ~= ARGV[2] then
    redis.call('HSET', key, '/dailyLimit', ARGV[2])
    changed = changed + 1
  end
end
return {#ids, changed}
"""
)

# Reset one key (KEYS[2]) or, with KEYS[2] absent, every key of the index KEYS[1].
# ARGV: key-hash prefix, 'today' or 'tokens', today (JSON text), history prefix of today
# ('/usageHistory/<day>/'), count of top-level fields to zero, those fields, then the bucket
# field names to zero ('tokens'). Replies the number of keys reset.
POTLUCK_RESET = (
    SHEBANG
    + r"""
local keys = {}
if KEYS[2] then
  if redis.call('HEXISTS', KEYS[2], '@doc') == 1 then keys[1] = KEYS[2] end
else
  for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do keys[#keys + 1] = ARGV[1] .. id end
end
local n = tonumber(ARGV[5])
local top, bucket = {}, {}
for i = 6, 5 + n do top[#top + 1] = ARGV[i] end
for i = 6 + n, #ARGV do bucket[ARGV[i]] = true end
local history = '/usageHistory/'
for _, key in ipairs(keys) do
  for _, field in ipairs(top) do
    if redis.call('HEXISTS', key, field) == 1 or ARGV[2] == 'today' then
      redis.call('HSET', key, field, '0')
    end
  end
  if ARGV[2] == 'today' then
    redis.call('HSET', key, '/lastResetDate', ARGV[3])
    local fields = redis.call('HGETALL', key)
    for i = 1, #fields, 2 do
      local f = fields[i]
      if string.sub(f, 1, #ARGV[4]) == ARGV[4] then
        redis.call('HDEL', key, f)
      end
    end
    for name, _ in pairs(bucket) do
      redis.call('HSET', key, ARGV[4] .. 'summary/' .. name, '0')
    end
  else
    local fields = redis.call('HGETALL', key)
    for i = 1, #fields, 2 do
      local f = fields[i]
      if string.sub(f, 1, #history) == history then
        local last = string.match(f, '/([^/]*)$')
        if bucket[last] then redis.call('HSET', key, f, '0') end
      end
    end
  end
end
return #keys
"""
)

# KEYS: index list, old hash, new hash. ARGV: old id, new id, then field/value pairs set
# on the moved key. {'not_found'}/{'exists'}/{'ok'}.
POTLUCK_REGENERATE = (
    SHEBANG
    + r"""
if redis.call('HEXISTS', KEYS[2], '@doc') == 0 then return {'not_found'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'exists'} end
redis.call('RENAME', KEYS[2], KEYS[3])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
local at = redis.call('LPOS', KEYS[1], ARGV[1])
if at then redis.call('LSET', KEYS[1], at, ARGV[2]) else redis.call('RPUSH', KEYS[1], ARGV[2]) end
return {'ok'}
"""
)

# KEYS: index list, key hash. ARGV: id. Replies 1 (deleted) or 0.
POTLUCK_DELETE = (
    SHEBANG
    + r"""
local gone = redis.call('DEL', KEYS[2])
redis.call('LREM', KEYS[1], 0, ARGV[1])
return gone
"""
)

# KEYS: index list. ARGV: key-hash prefix. Deletes every key and the index.
POTLUCK_CLEAR = (
    SHEBANG
    + r"""
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do redis.call('DEL', ARGV[1] .. id) end
redis.call('DEL', KEYS[1])
return {'ok'}
"""
)
