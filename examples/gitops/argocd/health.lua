-- Argo CD health check for rocky.dev/RockyRun.
--
-- Healthy     the run finished and every table copied (phase Succeeded)
-- Progressing no status yet, status for an older generation, or not Complete (Pending/Running)
-- Degraded    the run finished with failures (PartialFailure / Failed); the message counts
--             failed tables per failure_kind, e.g. "PartialFailure: 8 of 12 tables copied;
--             failed: 1 auth-failed, 2 not-found"
--
-- The contract is the Complete condition; phase is the one-word summary. Written for Lua 5.1
-- (Argo CD runs gopher-lua); tests/consumers/test_argocd_health.py runs it under Lua 5.1.
local hs = {}

local function find_condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function num(v)
  if v == nil then
    return 0
  end
  return tonumber(v) or 0
end

-- "1 auth-failed, 2 not-found": status.failures (complete counts kept by the operator), else
-- the errors listed in status.runOutput.
local function failures_by_kind(status)
  local counts = {}
  local seen = false
  if type(status.failures) == "table" then
    for kind, n in pairs(status.failures) do
      counts[kind] = num(n)
      seen = true
    end
  end
  if not seen and status.runOutput ~= nil and type(status.runOutput.errors) == "table" then
    for _, e in ipairs(status.runOutput.errors) do
      local kind = e.failure_kind or "unknown"
      counts[kind] = (counts[kind] or 0) + 1
    end
  end
  local kinds = {}
  for kind, n in pairs(counts) do
    if n > 0 then
      table.insert(kinds, kind)
    end
  end
  table.sort(kinds)
  local parts = {}
  for _, kind in ipairs(kinds) do
    table.insert(parts, string.format("%d %s", counts[kind], kind))
  end
  return table.concat(parts, ", ")
end

local function tables_summary(status)
  local t = status.tables or {}
  local copied = num(t.copied)
  local planned = num(t.planned)
  if planned == 0 and status.runOutput ~= nil then
    copied = num(status.runOutput.tables_copied)
    planned = copied + num(status.runOutput.tables_failed) + num(status.runOutput.tables_skipped)
  end
  return string.format("%d of %d tables copied", copied, planned)
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to accept the run"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil
    and num(status.observedGeneration) < num(generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase or "Pending"
local complete = find_condition(status, "Complete")
local finished = complete ~= nil and complete.status == "True"

if finished or phase == "Failed" then
  local failed = failures_by_kind(status)
  if phase == "Succeeded" and failed == "" then
    hs.status = "Healthy"
    hs.message = "Succeeded: " .. tables_summary(status)
    return hs
  end
  hs.status = "Degraded"
  local message = phase .. ": " .. tables_summary(status)
  if failed ~= "" then
    message = message .. "; failed: " .. failed
  end
  if failed == "" and complete ~= nil and complete.message ~= nil and complete.message ~= "" then
    message = message .. "; " .. complete.message
  end
  hs.message = message
  return hs
end

hs.status = "Progressing"
local t = status.tables or {}
local message = phase .. ": " .. tables_summary(status)
if num(t.running) > 0 then
  message = message .. ", " .. string.format("%d running", num(t.running))
end
if num(t.waitingRetry) > 0 then
  message = message .. ", " .. string.format("%d waiting to retry", num(t.waitingRetry))
end
hs.message = message
return hs
