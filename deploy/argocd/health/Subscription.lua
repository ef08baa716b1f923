-- Argo CD health check for telco.intent.dev/v1alpha1 Subscription (Lua 5.1, as gopher-lua runs it).
-- Healthy once the state the spec asks for is reached (active, suspended on purpose, scheduled,
-- ended); Degraded when Stalled (a refused order, failed provisioning, a payment hold); else Progressing.
-- Never Suspended: a sync wave waits for ever behind Suspended.
-- Install: resource.customizations.health.telco.intent.dev_Subscription in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

-- Final states are Healthy even when written by an older controller (Ready=False Terminated).
local ENDED = { terminated = "terminated: the service was removed", cancelled = "cancelled before activation" }

local function run(o)
  local verdict = common(o)
  if verdict ~= nil then
    return verdict
  end
  local st = o.status
  local state = st.state
  if state == "aborted" then
    return result("Degraded", "aborted: " .. says(st, "Ready", "provisioning failed permanently"))
  end
  if is(st, "Ready", "True") then
    return result("Healthy", says(st, "Ready", tostring(state)))
  end
  if state ~= nil and ENDED[state] ~= nil then
    return result("Healthy", ENDED[state])
  end
  if state == nil then
    return result("Progressing", "waiting for the controller to set status.state")
  end
  return result("Progressing", tostring(state) .. ": " .. says(st, "Ready", "in progress"))
end

return run(obj)
