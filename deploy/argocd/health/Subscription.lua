-- Argo CD health check for telco.intent.dev/v1alpha1 Subscription (Lua 5.1, as gopher-lua runs it).
-- Progressing until the controller caught up; then the TMF637 state and the conditions decide.
-- Install: resource.customizations.health.telco.intent.dev_Subscription in argocd-cm (deploy/argocd/render.py).
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
  if state == "aborted" then
    return result("Degraded", "aborted: " .. says(st, "Ready", "provisioning failed permanently"))
  end
  if state == "suspended" then
    if is(st, "PaymentHold", "True") then
      return result("Suspended", "suspended for non-payment: " .. says(st, "PaymentHold", "invoices overdue"))
    end
    if type(st.billing) == "table" and type(st.billing.paymentHold) == "table" then
      return result("Suspended", "suspended for non-payment")
    end
    return result("Suspended", "suspended: " .. says(st, "Ready", "as the customer asked"))
  end
  if state == "terminated" then
    return result("Healthy", "terminated: the service was removed")
  end
  if state == "cancelled" then
    return result("Healthy", "cancelled before activation")
  end
  if state == "active" then
    if is(st, "Ready", "True") then
      return result("Healthy", says(st, "Ready", "active"))
    end
    if is(st, "Ready", "False") and not is(st, "Progressing", "True") then
      return result("Degraded", "active but not ready: " .. says(st, "Ready", "service not ready"))
    end
    return result("Progressing", "active: " .. says(st, "Ready", "waiting for its service"))
  end
  if state == "created" or state == "pendingActive" or state == "pendingTerminate" then
    return result("Progressing", state .. ": " .. says(st, "Progressing", says(st, "Ready", "in progress")))
  end
  return result("Progressing", "waiting for the controller to set status.state")
end

return run(obj)
