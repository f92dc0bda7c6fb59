-- Argo CD health check for rocky.dev/RockyRun.
--
-- Healthy     the run finished and every table copied (phase Succeeded)
-- Progressing no status yet, or not Complete (Pending/Running; also while the operator has not
--             yet observed the latest generation of an unfinished run)
-- Degraded    the run finished with failures (PartialFailure / Failed); the message counts
--             failed tables per failure_kind, e.g. "PartialFailure: 8 of 12 tables copied;
--             failed: 1 auth-failed, 2 not-found"
--             Also a run that planned zero tables (Complete reason NoTablesMatched: a typo'd
--             prefix, a filter matching no schema): it exits 0 like `rocky run`, but an empty
--             replication is a misconfiguration, never a quiet success.
--
-- A finished run keeps its verdict whatever the generation: the spec is frozen with the plan,
-- so an edit after the run finished is never applied (the message says so) and must not turn
-- the run back to Progressing forever.
--
-- The contract is the Complete condition; phase is the one-word summary. Written for the Lua
-- Argo CD gives a custom health check without useOpenLibs: gopher-lua (Lua 5.1) with only the
-- base, table and package libraries and a restricted os, so no string or math library here.
-- tests/consumers/test_argocd_health.py runs it in that setup (tools/argocd-lua-health).
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
    table.insert(parts, tostring(counts[kind]) .. " " .. kind)
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
  return tostring(copied) .. " of " .. tostring(planned) .. " tables copied"
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to accept the run"
  return hs
end

local phase = status.phase or "Pending"
local complete = find_condition(status, "Complete")
local finished = (complete ~= nil and complete.status == "True") or phase == "Failed"
    or phase == "Succeeded" or phase == "PartialFailure"

local generation = obj.metadata and obj.metadata.generation
local stale = generation ~= nil and status.observedGeneration ~= nil
    and num(status.observedGeneration) < num(generation)

-- The note a finished run carries when its spec was edited afterwards.
local function edited_note()
  local ignored = find_condition(status, "SpecChangedIgnored")
  if ignored ~= nil and ignored.status == "True" then
    return "; spec edit ignored: " .. (ignored.message or "the spec is frozen with the plan")
  end
  if stale then
    return "; spec edited after the run was planned (generation " .. tostring(generation)
        .. ") is not applied"
  end
  return ""
end

if not finished and stale then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if finished then
  if complete ~= nil and complete.reason == "NoTablesMatched" then
    hs.status = "Degraded"
    hs.message = "NoTablesMatched: " .. (complete.message or "the run planned zero tables")
        .. edited_note()
    return hs
  end
  local failed = failures_by_kind(status)
  if phase == "Succeeded" and failed == "" then
    hs.status = "Healthy"
    hs.message = "Succeeded: " .. tables_summary(status) .. edited_note()
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
  hs.message = message .. edited_note()
  return hs
end

hs.status = "Progressing"
local t = status.tables or {}
local message = phase .. ": " .. tables_summary(status)
if num(t.running) > 0 then
  message = message .. ", " .. tostring(num(t.running)) .. " running"
end
if num(t.waitingRetry) > 0 then
  message = message .. ", " .. tostring(num(t.waitingRetry)) .. " waiting to retry"
end
hs.message = message
return hs
