-- Argo CD health check for telco.intent.dev/v1alpha1 Invoice (Lua 5.1, as gopher-lua runs it).
-- Healthy once issued (TMF678 validated, sent, partiallyPaid, settled); Degraded when on hold.
-- Install: resource.customizations.health.telco.intent.dev_Invoice in argocd-cm (deploy/argocd/render.py).
local hs = {}

-- The condition of type `ctype` in status.conditions, or nil.
local function condition(status, ctype)
  if status == nil or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is(status, ctype, value)
  local c = condition(status, ctype)
  return c ~= nil and c.status == value
end

-- A condition's message (or reason when the message is empty), else `fallback`.
local function says(status, ctype, fallback)
  local c = condition(status, ctype)
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    return c.message
  end
  if c ~= nil and type(c.reason) == "string" and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local function reason(status, ctype)
  local c = condition(status, ctype)
  if c ~= nil then
    return c.reason
  end
  return nil
end

-- Why the status cannot be judged yet: deletion in progress, no status, or a spec the
-- controller has not processed (status.observedGeneration < metadata.generation).
local function pending(o)
  local meta = o.metadata or {}
  if meta.deletionTimestamp ~= nil then
    return "being deleted: waiting for the controller to clean up and release its finalizer"
  end
  if type(o.status) ~= "table" then
    return "waiting for the controller to report a status"
  end
  local generation = meta.generation
  local observed = o.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "waiting for the controller to process generation " .. tostring(generation)
  end
  return nil
end

local function result(health, message)
  hs.status = health
  hs.message = message
  return hs
end

local ISSUED = { validated = true, sent = true, partiallyPaid = true, settled = true }

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  local state = st.state
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  if state == "onHold" then
    return result("Degraded", "on hold: " .. says(st, "Ready", "the bill cannot be issued"))
  end
  if state ~= nil and ISSUED[state] then
    local message = state
    if type(st.billNo) == "string" and st.billNo ~= "" then
      message = message .. " (bill " .. st.billNo .. ")"
    end
    if type(st.amountDue) == "table" and st.amountDue.value ~= nil and st.amountDue.unit ~= nil then
      message = message .. ", amount due " .. tostring(st.amountDue.value) .. " " .. tostring(st.amountDue.unit)
    end
    if st.overdue == true then
      message = message .. ", overdue"
    end
    return result("Healthy", message)
  end
  if state == "new" then
    return result("Progressing", "new: " .. says(st, "Ready", "the bill is being computed"))
  end
  return result("Progressing", "waiting for the controller to set status.state")
end

return run(obj)
