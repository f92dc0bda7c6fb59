-- Argo CD health check for rocky.dev/RockySchedule.
--
-- Suspended   spec.suspend is true
-- Degraded    the schedule is invalid (Ready False), or its latest finished run did not fully
--             succeed (LastRunSucceeded False: the message names the run and its phase)
-- Progressing no status yet
-- Healthy     otherwise (message: the next scheduled time, and the runs in flight)
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

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no new runs start"
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to schedule the first run"
  return hs
end

local ready = find_condition(status, "Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end

local last = find_condition(status, "LastRunSucceeded")
if last ~= nil and last.status == "False" then
  hs.status = "Degraded"
  hs.message = last.message or "the latest run did not fully succeed"
  return hs
end

hs.status = "Healthy"
local message = "next run at " .. (status.nextScheduleTime or "unknown")
if type(status.active) == "table" and #status.active > 0 then
  message = message .. "; running: " .. table.concat(status.active, ", ")
end
hs.message = message
return hs
